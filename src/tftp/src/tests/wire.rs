//! Packet parse/emit.

use crate::wire::{MAX_FILENAME_LEN, MAX_OPTIONS};
use crate::{error_packet, ErrorCode, Mode, Opcode, Packet, PacketError, Request};

fn rrq_bytes(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![0, 1];
    for p in parts {
        v.extend_from_slice(p);
        v.push(0);
    }
    v
}

#[test]
fn parses_rrq_with_options_in_order_and_lowercased() {
    let b = rrq_bytes(&[b"ipxe.efi", b"OcTeT", b"TSIZE", b"0", b"BlkSize", b"1468"]);
    assert_eq!(
        Packet::parse(&b),
        Ok(Packet::Rrq(Request {
            filename: b"ipxe.efi".to_vec(),
            mode: Mode::Octet,
            options: vec![
                ("tsize".into(), "0".into()),
                ("blksize".into(), "1468".into())
            ],
        }))
    );
}

#[test]
fn modes_are_case_insensitive_and_unknown_mode_is_an_error() {
    for (m, want) in [
        (&b"netascii"[..], Mode::Netascii),
        (b"NETASCII", Mode::Netascii),
        (b"octet", Mode::Octet),
        (b"Mail", Mode::Mail),
    ] {
        match Packet::parse(&rrq_bytes(&[b"f", m])) {
            Ok(Packet::Rrq(r)) => assert_eq!(r.mode, want),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        Packet::parse(&rrq_bytes(&[b"f", b"binary"])),
        Err(PacketError::UnknownMode)
    );
}

#[test]
fn nul_termination_is_required() {
    assert_eq!(
        Packet::parse(b"\x00\x01file\x00octet"),
        Err(PacketError::MissingNul)
    );
    assert_eq!(Packet::parse(b"\x00\x01file"), Err(PacketError::MissingNul));
    assert_eq!(
        Packet::parse(b"\x00\x01f\x00octet\x00blksize\x00512"),
        Err(PacketError::OptionWithoutValue)
    );
    assert_eq!(
        Packet::parse(b"\x00\x01f\x00octet\x00blksize\x00"),
        Err(PacketError::OptionWithoutValue)
    );
    assert_eq!(
        Packet::parse(b"\x00\x01f\x00octet\x00blk"),
        Err(PacketError::MissingNul)
    );
}

#[test]
fn single_stray_nul_after_options_is_tolerated_but_not_more() {
    let mut b = rrq_bytes(&[b"f", b"octet", b"blksize", b"512"]);
    b.push(0);
    match Packet::parse(&b) {
        Ok(Packet::Rrq(r)) => assert_eq!(r.options.len(), 1),
        other => panic!("{other:?}"),
    }
    let mut b = rrq_bytes(&[b"f", b"octet"]);
    b.push(0);
    assert!(matches!(Packet::parse(&b), Ok(Packet::Rrq(_))));
    b.push(0);
    assert_eq!(Packet::parse(&b), Err(PacketError::EmptyOptionName));
}

#[test]
fn filename_limits() {
    let long = vec![b'a'; MAX_FILENAME_LEN];
    assert!(Packet::parse(&rrq_bytes(&[&long, b"octet"])).is_ok());
    let too_long = vec![b'a'; MAX_FILENAME_LEN + 1];
    assert_eq!(
        Packet::parse(&rrq_bytes(&[&too_long, b"octet"])),
        Err(PacketError::FilenameTooLong)
    );
    assert_eq!(
        Packet::parse(&rrq_bytes(&[b"", b"octet"])),
        Err(PacketError::EmptyFilename)
    );
}

#[test]
fn option_count_limit() {
    let mut parts: Vec<Vec<u8>> = vec![b"f".to_vec(), b"octet".to_vec()];
    for i in 0..MAX_OPTIONS {
        parts.push(format!("opt{i}").into_bytes());
        parts.push(b"1".to_vec());
    }
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    assert!(Packet::parse(&rrq_bytes(&refs)).is_ok());
    parts.push(b"one-more".to_vec());
    parts.push(b"1".to_vec());
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    assert_eq!(
        Packet::parse(&rrq_bytes(&refs)),
        Err(PacketError::TooManyOptions)
    );
}

#[test]
fn non_utf8_option_is_an_error() {
    assert_eq!(
        Packet::parse(&rrq_bytes(&[b"f", b"octet", b"\xff", b"1"])),
        Err(PacketError::OptionNotUtf8)
    );
}

#[test]
fn unknown_and_truncated_opcodes() {
    assert_eq!(Packet::parse(&[]), Err(PacketError::Truncated));
    assert_eq!(Packet::parse(&[0]), Err(PacketError::Truncated));
    assert_eq!(Packet::parse(&[0, 0]), Err(PacketError::UnknownOpcode(0)));
    assert_eq!(
        Packet::parse(&[0, 7, 1]),
        Err(PacketError::UnknownOpcode(7))
    );
    assert_eq!(Packet::parse(&[0, 4, 1]), Err(PacketError::Truncated));
    assert_eq!(Packet::parse(&[0, 3]), Err(PacketError::Truncated));
    assert_eq!(Packet::parse(&[0, 5, 0]), Err(PacketError::Truncated));
}

#[test]
fn ack_data_error_oack() {
    assert_eq!(
        Packet::parse(&[0, 4, 0xff, 0xff]),
        Ok(Packet::Ack { block: 65535 })
    );
    // Trailing bytes after an ACK are ignored.
    assert_eq!(
        Packet::parse(&[0, 4, 0, 2, 0, 0]),
        Ok(Packet::Ack { block: 2 })
    );
    assert_eq!(
        Packet::parse(&[0, 3, 0, 1]),
        Ok(Packet::Data {
            block: 1,
            data: vec![]
        })
    );
    // ERROR without the final NUL is tolerated.
    assert_eq!(
        Packet::parse(b"\x00\x05\x00\x08abort"),
        Ok(Packet::Error {
            code: 8,
            message: "abort".into()
        })
    );
    assert_eq!(
        Packet::parse(b"\x00\x06tsize\x00123\x00"),
        Ok(Packet::Oack {
            options: vec![("tsize".into(), "123".into())]
        })
    );
}

#[test]
fn error_packet_helper_and_codes() {
    let b = error_packet(ErrorCode::AccessViolation, "no\0pe");
    assert_eq!(b, b"\x00\x05\x00\x02nope\x00");
    for c in 0..=8u16 {
        assert_eq!(ErrorCode::from_code(c).map(ErrorCode::code), Some(c));
    }
    assert_eq!(ErrorCode::from_code(9), None);
    assert_eq!(ErrorCode::OptionNegotiationFailed.code(), 8);
    assert_eq!(ErrorCode::UnknownTransferId.code(), 5);
}

#[test]
fn opcodes_round_trip() {
    for v in 1..=6u16 {
        assert_eq!(Opcode::from_u16(v).map(Opcode::to_u16), Some(v));
    }
    assert_eq!(Opcode::from_u16(7), None);
}

#[test]
fn packet_errors_display() {
    let all = [
        PacketError::Truncated,
        PacketError::UnknownOpcode(9),
        PacketError::MissingNul,
        PacketError::EmptyFilename,
        PacketError::FilenameTooLong,
        PacketError::UnknownMode,
        PacketError::OptionWithoutValue,
        PacketError::EmptyOptionName,
        PacketError::OptionNotUtf8,
        PacketError::TooManyOptions,
    ];
    for e in all {
        let s = e.to_string();
        assert!(!s.is_empty());
        let _: &dyn std::error::Error = &e;
    }
    assert!(PacketError::UnknownOpcode(9).to_string().contains('9'));
}
