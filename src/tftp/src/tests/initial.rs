//! Listen-port classification.

use super::parse;
use crate::{handle_initial, Initial, Mode, Opcode, Packet, PacketError, PathError, Rejection};

fn request(op: u8, name: &[u8], mode: &[u8]) -> Vec<u8> {
    let mut v = vec![0, op];
    v.extend_from_slice(name);
    v.push(0);
    v.extend_from_slice(mode);
    v.push(0);
    v
}

fn error_code(bytes: &[u8]) -> u16 {
    match parse(bytes) {
        Packet::Error { code, .. } => code,
        other => panic!("expected ERROR, got {other:?}"),
    }
}

#[test]
fn rrq_is_read_with_sanitised_path() {
    match handle_initial(&request(1, b"\\pxelinux.cfg\\default", b"octet")) {
        Initial::Read(req) => {
            assert_eq!(req.path, "pxelinux.cfg/default");
            assert_eq!(req.mode, Mode::Octet);
            assert!(req.options.is_empty());
        }
        other => panic!("{other:?}"),
    }
    match handle_initial(&request(1, b"/ipxe.efi", b"NETASCII")) {
        Initial::Read(req) => {
            assert_eq!(req.path, "ipxe.efi");
            assert_eq!(req.mode, Mode::Netascii);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrq_is_refused_with_access_violation() {
    match handle_initial(&request(2, b"upload.bin", b"octet")) {
        Initial::Reply(bytes, Rejection::WriteRequest) => {
            assert_eq!(error_code(&bytes), 2);
            assert!(
                matches!(parse(&bytes), Packet::Error { message, .. } if message.contains("read-only"))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_paths_are_refused_with_access_violation() {
    let cases: [(&[u8], PathError); 5] = [
        (b"../etc/passwd", PathError::ParentComponent),
        (b"/../x", PathError::ParentComponent),
        (b"a/../../b", PathError::ParentComponent),
        (b"a\x01b", PathError::ControlCharacter),
        (b"/", PathError::Empty),
    ];
    for (name, why) in cases {
        match handle_initial(&request(1, name, b"octet")) {
            Initial::Reply(bytes, Rejection::BadPath(e)) => {
                assert_eq!(e, why);
                assert_eq!(error_code(&bytes), 2);
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
}

#[test]
fn embedded_nul_in_name_never_reaches_the_filesystem() {
    // `a\0../x` parses as filename "a", mode "../x" -> unknown mode -> dropped.
    let v = b"\x00\x01a\x00../x\x00octet\x00".to_vec();
    assert!(matches!(
        handle_initial(&v),
        Initial::Drop(Rejection::Malformed(PacketError::UnknownMode))
    ));
}

#[test]
fn mail_mode_is_refused() {
    match handle_initial(&request(1, b"x", b"mail")) {
        Initial::Reply(bytes, Rejection::MailMode) => assert_eq!(error_code(&bytes), 4),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_and_other_opcodes_are_dropped_with_a_reason() {
    assert!(matches!(
        handle_initial(&[]),
        Initial::Drop(Rejection::Malformed(PacketError::Truncated))
    ));
    assert!(matches!(
        handle_initial(&[0, 9, 1, 2]),
        Initial::Drop(Rejection::Malformed(PacketError::UnknownOpcode(9)))
    ));
    assert!(matches!(
        handle_initial(b"\x00\x01nonul"),
        Initial::Drop(Rejection::Malformed(PacketError::MissingNul))
    ));
    for (bytes, op) in [
        (vec![0, 4, 0, 1], Opcode::Ack),
        (vec![0, 3, 0, 1, 7], Opcode::Data),
        (vec![0, 5, 0, 1, b'x', 0], Opcode::Error),
        (vec![0, 6], Opcode::Oack),
    ] {
        assert_eq!(
            handle_initial(&bytes),
            Initial::Drop(Rejection::UnexpectedOpcode(op))
        );
    }
}

#[test]
fn rejections_display() {
    let r = Rejection::BadPath(PathError::ParentComponent);
    assert!(r.to_string().contains(".."));
    assert!(!Rejection::WriteRequest.to_string().is_empty());
}
