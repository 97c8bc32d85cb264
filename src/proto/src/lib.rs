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

/// Packages under `cosi`: the COSI resource state service Omni serves.
pub mod cosi {
    /// `cosi.resource`: resources, queries and the `State` service
    /// ([`cosi::resource::state_client::StateClient`], [`cosi::resource::state_server::State`]).
    pub mod resource {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("cosi.resource");
    }
}

/// Packages under `omni`: the Omni resource specs a provider reads and writes.
pub mod omni {
    /// `omni.specs`: InfraMachine, InfraMachineStatus, BMCConfig, ProviderJoinConfig, … specs.
    pub mod specs {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("omni.specs");
    }
}

/// `grpctunnel.v1`: the tunnel protocol the Talos metal agent opens to its provider
/// (reverse tunnel: the agent answers RPCs the provider starts).
pub mod grpctunnel {
    /// The `TunnelService` client and server; the frame messages are re-exported from the
    /// sans-IO `rackboot-tunnel` crate.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        pub use rackboot_tunnel::grpctunnel::v1::*;
        tonic::include_proto!("grpctunnel.v1");
    }
}

/// `management`: the Talos metal agent's `AgentService` (called through the reverse tunnel).
pub mod management {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("management");
}

pub use prost;
pub use prost_types;
pub use tonic;
