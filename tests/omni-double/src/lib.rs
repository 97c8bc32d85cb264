//! Omni test double (work in progress).
