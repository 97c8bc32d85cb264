//! Omni test double (work in progress).
pub mod access;
pub mod auth;
pub mod control;
pub mod double;
pub mod json;
pub mod keygen;
pub mod layer;
pub mod names;
pub mod omni;
pub mod persist;
pub mod query;
pub mod server;
pub mod shared;
pub mod store;
pub mod watch;

pub use double::{Double, DoubleConfig, Running};
pub use omni::OmniHandle;
