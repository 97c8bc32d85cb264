//! The rackboot protocol definitions, compiled from `<repo>/proto/` at build time with protox
//! and tonic-build (no system `protoc` needed). Shared by the appliance server, the agent and
//! the Omni link.
//!
//! - [`agent::v1`]: the agent ↔ appliance link (`rackboot.agent.v1`): messages
//!   [`agent::v1::AgentMessage`], [`agent::v1::ApplianceMessage`], …, the client
//!   [`agent::v1::agent_link_client::AgentLinkClient`] and the server trait
//!   [`agent::v1::agent_link_server::AgentLink`] with
//!   [`agent::v1::agent_link_server::AgentLinkServer`].
#![forbid(unsafe_code)]

/// Packages under `rackboot.agent`.
pub mod agent {
    /// `rackboot.agent.v1`: the agent link.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("rackboot.agent.v1");
    }
}

pub use prost;
pub use tonic;
