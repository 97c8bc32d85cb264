//! The agent link's messages (`rackboot.agent.v1`), both directions, and the agent's kernel
//! command line parser. Nothing panics; every message that decodes re-encodes to a message that
//! decodes equal (decode → encode → decode); an accepted command line names a `host:port`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rackboot_proto::agent::v1::{AgentMessage, ApplianceMessage, HardwareReport, Hello};

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(m) = M::decode(data) {
        let bytes = m.encode_to_vec();
        assert_eq!(bytes.len(), m.encoded_len());
        let back = M::decode(bytes.as_slice()).expect("re-encoded message decodes");
        assert_eq!(back, m, "decode → encode → decode changed the message");
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<AgentMessage>(data);
    round_trip::<ApplianceMessage>(data);
    round_trip::<Hello>(data);
    round_trip::<HardwareReport>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = rackboot_agent::cmdline::parse(text) {
            assert!(rackboot_agent::cmdline::validate_appliance(&p.appliance).is_ok());
            assert!(!p.appliance.chars().any(char::is_whitespace), "{p:?}");
        }
    }
});
