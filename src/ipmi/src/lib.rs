//! Sans-IO IPMI v2.0 over LAN (RMCP+) client core.
//!
//! The library never touches a socket or a clock: the caller (the "shell") owns the UDP socket
//! (BMC port 623) and passes in received datagrams, the current [`std::time::Instant`] and a
//! randomness source; the [`Client`] hands back datagrams to send, the next deadline and results.
//!
//! # What it does
//! * Session setup: Get Channel Authentication Capabilities (IPMI v1.5 wrapper, v2.0 data bit)
//!   → Open Session → RAKP 1/2 → RAKP 3/4 → Set Session Privilege Level. Cipher suites are tried
//!   in the configured order (default 17 = RAKP-HMAC-SHA256 / HMAC-SHA256-128 / AES-CBC-128,
//!   then 3 = RAKP-HMAC-SHA1 / HMAC-SHA1-96 / AES-CBC-128); a suite the BMC refuses (non-zero
//!   Open Session status) or never answers is skipped.
//! * Every in-session request is encrypted and authenticated with a fresh session sequence
//!   number; replies with the wrong session id, a replayed / out-of-window sequence number, a bad
//!   AuthCode or checksum, or garbage are dropped and counted in [`Stats`].
//! * Each request is retransmitted after `timeout` up to `retries` times (handshake messages as
//!   the same bytes; IPMI requests with a new session sequence number and the same rqSeq, like
//!   ipmitool). When an established session stops answering, the client opens a new session once
//!   and resends. Then the command fails with [`IpmiError::Timeout`].
//! * Wrong credentials give [`IpmiError::AuthFailed`] ("wrong username or password").
//!
//! # Call order
//! ```text
//! let mut c = Client::new(ClientConfig::new("admin", "password"), Box::new(csprng_fill))?;
//! c.start(Command::GetChassisStatus, Instant::now())?;     // one command at a time
//! loop {
//!     while let Some(d) = c.poll_transmit() { socket.send(&d) }        // 1. flush sends
//!     if let Some(r) = c.poll_result() { break r }                      // 2. finished?
//!     match c.poll_timeout() {                                          // 3. wait
//!         Some(t) => match socket.recv_until(t) {
//!             Some(d) => c.handle_datagram(&d, Instant::now()),
//!             None => c.handle_timeout(Instant::now()),
//!         },
//!         None => unreachable: a started command always has a deadline or a result
//!     }
//! }
//! // more commands reuse the session ...
//! c.close(Instant::now())?;   // then drive the same loop until poll_result() = SessionClosed
//! ```
//! BMCs expire idle sessions (often after 60 s): close the session after each batch of
//! commands. `examples/ipmi_probe.rs` is a complete blocking driver over `std::net::UdpSocket`.
//!
//! The password is never printed: [`ClientConfig`]'s `Debug` redacts it.
#![forbid(unsafe_code)]

mod client;
pub mod commands;
pub mod crypto;
pub mod error;
pub mod rakp;
mod session;
mod window;
pub mod wire;

#[cfg(test)]
mod kat_tests;

pub use client::{Client, ClientConfig, Privilege, RandomSource, Stats};
pub use commands::{
    BootDevice, BootFlags, ChassisControl, ChassisStatus, Command, DeviceId, IpmiRequest, Response,
};
pub use crypto::{CipherSuite, Hash};
pub use error::{IpmiError, ParseError};
