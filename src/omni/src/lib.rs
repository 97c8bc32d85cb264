//! The Omni link (work in progress).
