//! The Omni link: rackboot as a static bare-metal infrastructure provider (omni-wire.md).
//!
//! - [`auth`]: service account keys and signed requests.
#![forbid(unsafe_code)]

pub mod auth;
pub mod desired;
pub mod factory;
pub mod state;
pub mod transport;
