//! The metal agent's reverse tunnel (`grpctunnel.v1`), which anything on the segment can open:
//! sequences of frames (length-prefixed, decoded as `ServerToClient` for rackboot's tunnel
//! client and as `ClientToServer` for the agent's tunnel server) never panic either core, and
//! a core either refuses the peer or keeps its bookkeeping bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rackboot_tunnel::pb::{ClientToServer, ServerToClient};
use rackboot_tunnel::{Client, Server};

/// Split `data` into frames: one length byte (0..=255), then that many bytes.
fn frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = vec![];
    while let Some((&n, rest)) = data.split_first() {
        let n = usize::from(n).min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let negotiated = data.first().is_some_and(|b| b & 1 == 1);
    let mut c = Client::new(negotiated);
    for i in 0..3u8 {
        c.call("/management.AgentService/WipeDisks", vec![i; usize::from(i) * 7000]);
    }
    let mut s = Server::new(negotiated);
    for f in frames(data.get(1..).unwrap_or(&[])) {
        if let Ok(m) = ServerToClient::decode(f) {
            if c.on_frame(m).is_err() {
                break;
            }
            while c.poll_transmit().is_some() {}
        }
    }
    for f in frames(data.get(1..).unwrap_or(&[])) {
        if let Ok(m) = ClientToServer::decode(f) {
            match s.on_frame(m) {
                Ok(calls) => {
                    for call in calls {
                        s.respond(call.stream, Ok(call.request));
                    }
                }
                Err(_) => break,
            }
            let mut sent = 0;
            while s.poll_transmit().is_some() {
                sent += 1;
                assert!(sent < 1_000_000, "endless output");
            }
        }
    }
    assert!(c.open_calls() <= 3);
});
