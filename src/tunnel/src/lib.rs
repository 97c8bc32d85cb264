//! Sans-IO grpctunnel (`grpctunnel.v1`): unary RPCs multiplexed over one gRPC stream of frames.
//!
//! The Talos metal agent dials its provider and opens a *reverse* tunnel
//! (`/grpctunnel.v1.TunnelService/OpenReverseTunnel`): the agent is the tunnel server (it
//! answers `management.AgentService` calls with `ServerToClient` frames), the provider is the
//! tunnel client (it starts calls with `ClientToServer` frames). [`Client`] and [`Server`] are
//! those two roles as state machines: feed them the peer's frames, take the frames they want
//! sent from `poll_transmit`. No I/O, no clocks (timeouts belong to the shell).
//!
//! Protocol facts used here: stream ids are chosen by the client, start at 1 and only grow; a
//! message goes as `*_message {size, data ≤ 16 KiB}` then `more_*_data` chunks; a unary call
//! is `new_stream`, one request, `half_close`; the answer is optional headers, one response,
//! `close_stream {status}`. Revision one (both sides sent `grpctunnel-negotiate: on`) adds a
//! `Settings` frame from the tunnel server on stream -1 before anything else, and per-stream
//! flow control: only message data counts; each side starts with the window the other
//! announced (server: `Settings.initial_window_size`, client: `NewStream.initial_window_size`)
//! and grants more with `window_update`. Revision zero has neither.
#![forbid(unsafe_code)]

mod client;
mod flow;
mod server;

pub use client::{CallResult, Client};
pub use server::{Call, Server};

/// `google.rpc.Status`, as carried in `close_stream`.
pub mod google {
    pub mod rpc {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

/// The frames of `grpctunnel.v1` (the `TunnelService` stubs are in `rackboot-proto`).
pub mod grpctunnel {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/grpctunnel.v1.rs"));
    }
}

pub use grpctunnel::v1 as pb;

/// The largest chunk of message data in one frame.
pub const CHUNK: usize = 16 * 1024;
/// The receive window we announce per stream (revision one).
pub const WINDOW: u32 = 64 * 1024;
/// The largest message we accept (the agent API's messages are small).
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// The metadata key both sides send to ask for revision one.
pub const NEGOTIATE_HEADER: &str = "grpctunnel-negotiate";

/// A protocol violation by the peer: the tunnel is unusable and should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    #[error("frame for stream {0} which is not open")]
    UnknownStream(i64),
    #[error("stream id {id} is not greater than the last one ({last})")]
    StreamIdOrder { id: i64, last: i64 },
    #[error("message of {0} bytes is larger than allowed")]
    TooLarge(u64),
    #[error("message data does not match the announced size")]
    BadChunk,
    #[error("peer sent more data than its flow-control window allows")]
    WindowExceeded,
    #[error("unexpected frame: {0}")]
    Unexpected(&'static str),
    #[error("protocol revision {0} is not supported")]
    Revision(i32),
}

/// A gRPC status as carried in `close_stream` (code 0 = OK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: i32,
    pub message: String,
}

impl Status {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// gRPC status codes used here.
pub mod code {
    pub const OK: i32 = 0;
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

#[cfg(test)]
mod tests;
