//! RMCP / IPMI v1.5 and v2.0 (RMCP+) wire parsing, the RAKP handshake messages and the command
//! replies, on any bytes. Nothing panics; slices stay inside the datagram; encoders and parsers
//! round-trip (v2.0 packet, boot flags).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot_ipmi::wire::{self, Packet};
use rackboot_ipmi::{crypto, rakp, BootFlags, ChassisStatus, DeviceId};

fuzz_target!(|data: &[u8]| {
    match wire::parse_packet(data) {
        Ok(Packet::V20(p)) => {
            assert!(wire::V20_HEADER_LEN + p.payload.len() + p.trailer.len() == data.len());
            // Round trip: re-encode the plain header + payload, parse again.
            if !p.encrypted && !p.authenticated && p.session_id == 0 && p.seq == 0 {
                let again = wire::encode_v20_plain(p.payload_type, p.payload);
                match wire::parse_packet(&again) {
                    Ok(Packet::V20(q)) => {
                        assert_eq!(q.payload, p.payload);
                        assert_eq!(q.payload_type, p.payload_type);
                    }
                    other => panic!("re-encoded v2.0 packet parsed as {other:?}"),
                }
            }
            let _ = rakp::parse_open_session_response(p.payload);
            let _ = rakp::parse_rakp2(p.payload);
            let _ = rakp::parse_rakp4(p.payload);
            let _ = crypto::aes_cbc_decrypt(&[0x42; 16], p.payload);
        }
        Ok(Packet::V15(p)) => {
            assert!(p.msg.len() < data.len());
            let _ = wire::parse_response(p.msg);
        }
        Err(_) => {}
    }
    // The same bytes as a bare IPMI message, RAKP payload and command reply data.
    if let Ok(r) = wire::parse_response(data) {
        let _ = format!("{r:?}");
    }
    let _ = rakp::parse_open_session_response(data);
    let _ = rakp::parse_rakp2(data);
    let _ = rakp::parse_rakp4(data);
    let _ = crypto::aes_cbc_decrypt(&[0x42; 16], data);
    let _ = DeviceId::parse(data);
    let _ = ChassisStatus::parse(data);
    if let Ok(f) = BootFlags::from_bytes(data) {
        assert_eq!(
            BootFlags::from_bytes(&f.to_bytes()),
            Ok(f),
            "boot flags round trip"
        );
    }
});
