//! The sans-IO RMCP+ client against the crate's independent fake BMC (src/ipmi/tests/common),
//! with the fuzzer in the middle: it decides, datagram by datagram, whether the genuine BMC reply
//! is delivered, dropped, mutated or joined by junk, and when the clock jumps. Nothing panics,
//! every command ends (result or error), and a command never completes with data the BMC did
//! not send: Get Chassis Status can only report the BMC's real power state.
#![no_main]

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../src/ipmi/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{FakeBmc, Harness};
use libfuzzer_sys::fuzz_target;
use rackboot_ipmi::{ClientConfig, Command, Response};

fuzz_target!(|data: &[u8]| {
    let mut it = data.iter().copied();
    let Some(setup) = it.next() else { return };
    let suite = if setup & 1 == 0 { 17 } else { 3 };
    let mut bmc = FakeBmc::new(&[suite]);
    bmc.power_on = setup & 2 != 0;
    let truth = bmc.power_on;
    let mut cfg = ClientConfig::new("admin", "password");
    cfg.retries = 1;
    let mut h = Harness::new(cfg, bmc);
    let rounds = 1 + usize::from((setup >> 2) & 3);
    for _ in 0..rounds {
        if h.client.start(Command::GetChassisStatus, h.now).is_err() {
            return;
        }
        let mut result = None;
        for _ in 0..2000 {
            while let Some(d) = h.client.poll_transmit() {
                for r in h.bmc.handle(&d) {
                    match it.next() {
                        // Out of script, or 0x00..=0x7f: deliver as is.
                        None | Some(0x00..=0x7f) => h.client.handle_datagram(&r, h.now),
                        Some(0x80..=0x9f) => {} // dropped
                        Some(0xa0..=0xcf) => {
                            // mutated: xor the next byte in at a fuzzer-chosen offset
                            let mut m = r.clone();
                            let at = usize::from(it.next().unwrap_or(0)) % m.len().max(1);
                            let x = it.next().unwrap_or(1);
                            if let Some(b) = m.get_mut(at) {
                                *b ^= x;
                            }
                            let cut = it.next().unwrap_or(255);
                            if cut < 16 {
                                m.truncate(m.len().saturating_sub(usize::from(cut)));
                            }
                            h.client.handle_datagram(&m, h.now);
                        }
                        Some(0xd0..=0xef) => {
                            // junk first, then the genuine reply
                            let n = usize::from(it.next().unwrap_or(0));
                            let junk: Vec<u8> = it.by_ref().take(n).collect();
                            h.client.handle_datagram(&junk, h.now);
                            h.client.handle_datagram(&r, h.now);
                        }
                        Some(_) => {
                            // replayed twice
                            h.client.handle_datagram(&r, h.now);
                            h.client.handle_datagram(&r, h.now);
                        }
                    }
                }
            }
            if let Some(r) = h.client.poll_result() {
                result = Some(r);
                break;
            }
            let t = h
                .client
                .poll_timeout()
                .expect("a running command has a deadline");
            assert!(t >= h.now, "deadline in the past");
            h.now = t + Duration::from_millis(1);
            h.client.handle_timeout(h.now);
        }
        match result.expect("the command ended") {
            Ok(Response::ChassisStatus(s)) => {
                assert_eq!(s.power_on, truth, "forged chassis status accepted")
            }
            Ok(other) => panic!("Get Chassis Status answered {other:?}"),
            Err(_) => {}
        }
    }
});
