//! Hand-built packets: HTTP boot, arch selection, every ignore reason,
//! malformed options.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::OptionCode;

use super::*;
use crate::{IgnoreReason, Malformed, Outcome};

const DISCOVER: u8 = 1;
const REQUEST: u8 = 3;

fn offer(pkt: &Pkt) -> (Decision, Reply) {
    let d = run(&pkt.bytes(), ArrivalPort::Dhcp, from_client());
    assert_eq!(d.outcome, Outcome::Offered, "{:?}", d.outcome);
    let reply = d.reply.clone().expect("reply");
    check_reply_invariants(&reply);
    (d, reply)
}

fn ignored(pkt: &Pkt, port: ArrivalPort) -> Decision {
    let d = run(&pkt.bytes(), port, from_client());
    assert!(d.reply.is_none(), "unexpected reply for {:?}", d.outcome);
    d
}

fn reason(pkt: &Pkt) -> IgnoreReason {
    match ignored(pkt, ArrivalPort::Dhcp).outcome {
        Outcome::Ignored(reason) => reason,
        other => panic!("not ignored: {other:?}"),
    }
}

fn http_client(arch: u16) -> Pkt {
    let vc = format!("HTTPClient:Arch:{arch:05}:UNDI:003000");
    Pkt::bare(DISCOVER)
        .opt(60, vc.as_bytes())
        .opt(93, &arch.to_be_bytes())
        .opt(94, &[1, 3, 0])
}

#[test]
fn http_boot_x86_64_gets_httpclient_and_url() {
    let (d, reply) = offer(&http_client(16));
    let m = decode(&reply);
    let url = "http://10.99.0.2:8080/tftp/x86_64/ipxe.efi";
    assert_eq!(
        opt_str(&m, OptionCode::ClassIdentifier).as_deref(),
        Some("HTTPClient")
    );
    assert_eq!(opt_str(&m, OptionCode::BootfileName).as_deref(), Some(url));
    assert_eq!(opt(&m, OptionCode::TFTPServerName), None);
    assert_eq!(file_header(&reply), url);
    assert_eq!(sname_header(&reply), "");
    assert_eq!(m.siaddr(), ADV);
    assert_eq!(m.xid(), 0x1122_3344);
    assert_eq!(m.chaddr(), &MAC);
    let seen = d.seen.expect("seen");
    assert_eq!(seen.arch, Some(16));
    assert_eq!(seen.vendor_class, "HTTPClient:Arch:00016:UNDI:003000");
}

#[test]
fn http_boot_arm64_gets_arm64_url() {
    for arch in [19, 24] {
        let (_, reply) = offer(&http_client(arch));
        let m = decode(&reply);
        assert_eq!(
            opt_str(&m, OptionCode::BootfileName).as_deref(),
            Some("http://10.99.0.2:8080/tftp/arm64/ipxe.efi")
        );
        assert_eq!(
            opt_str(&m, OptionCode::ClassIdentifier).as_deref(),
            Some("HTTPClient")
        );
    }
}

#[test]
fn table_files_for_pxe_arches() {
    for (arch, file) in [
        (0, "undionly.kpxe"),
        (7, "ipxe.efi"),
        (9, "ipxe.efi"),
        (11, "arm64/ipxe.efi"),
        (22, "arm64/ipxe.efi"),
    ] {
        let (_, reply) = offer(&Pkt::pxe(DISCOVER, arch));
        let m = decode(&reply);
        assert_eq!(
            opt_str(&m, OptionCode::BootfileName).as_deref(),
            Some(file),
            "arch {arch}"
        );
        assert_eq!(
            opt_str(&m, OptionCode::TFTPServerName).as_deref(),
            Some("10.99.0.2")
        );
        assert_eq!(file_header(&reply), file);
        assert_eq!(sname_header(&reply), "10.99.0.2");
    }
}

#[test]
fn arches_without_default_need_an_override() {
    for arch in [6, 10] {
        assert_eq!(
            reason(&Pkt::pxe(DISCOVER, arch)),
            IgnoreReason::UnknownArch(arch)
        );
    }
    assert_eq!(reason(&http_client(15)), IgnoreReason::UnknownArch(15));
    let config = cfg()
        .with_file_override(6, "i386/ipxe.efi")
        .expect("override");
    let d = handle(
        &Pkt::pxe(DISCOVER, 6).bytes(),
        ArrivalPort::Dhcp,
        from_client(),
        &config,
    );
    let m = decode(&d.reply.expect("reply"));
    assert_eq!(
        opt_str(&m, OptionCode::BootfileName).as_deref(),
        Some("i386/ipxe.efi")
    );
}

#[test]
fn url_override_for_pxe_client_has_no_option_66() {
    let url = "http://10.0.0.9/custom.efi";
    let config = cfg().with_file_override(7, url).expect("override");
    let d = handle(
        &Pkt::pxe(DISCOVER, 7).bytes(),
        ArrivalPort::Dhcp,
        from_client(),
        &config,
    );
    let reply = d.reply.expect("reply");
    let m = decode(&reply);
    assert_eq!(opt_str(&m, OptionCode::BootfileName).as_deref(), Some(url));
    assert_eq!(opt(&m, OptionCode::TFTPServerName), None);
    assert_eq!(sname_header(&reply), "");
}

#[test]
fn long_boot_file_goes_only_in_option_67() {
    let long = format!("{}/ipxe.efi", "d".repeat(150));
    let config = cfg().with_file_override(7, long.clone()).expect("override");
    let d = handle(
        &Pkt::pxe(DISCOVER, 7).bytes(),
        ArrivalPort::Dhcp,
        from_client(),
        &config,
    );
    let reply = d.reply.expect("reply");
    check_reply_invariants(&reply);
    assert_eq!(file_header(&reply), "");
    let m = decode(&reply);
    assert_eq!(opt_str(&m, OptionCode::BootfileName), Some(long));
    // 127 bytes still fit the header (with its NUL).
    let fits = "f".repeat(127);
    let config = cfg().with_file_override(7, fits.clone()).expect("override");
    let d = handle(
        &Pkt::pxe(DISCOVER, 7).bytes(),
        ArrivalPort::Dhcp,
        from_client(),
        &config,
    );
    assert_eq!(file_header(&d.reply.expect("reply")), fits);
}

#[test]
fn first_known_arch_wins() {
    let multi = |values: &[u16]| {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        Pkt::bare(DISCOVER).opt(60, b"PXEClient").opt(93, &bytes)
    };
    let file = |pkt: &Pkt| {
        let (d, reply) = offer(pkt);
        let m = decode(&reply);
        (
            d.seen.expect("seen").arch,
            opt_str(&m, OptionCode::BootfileName),
        )
    };
    assert_eq!(
        file(&multi(&[0x1234, 7])),
        (Some(7), Some("ipxe.efi".into()))
    );
    assert_eq!(file(&multi(&[7, 0])), (Some(7), Some("ipxe.efi".into())));
    assert_eq!(
        file(&multi(&[0, 7])),
        (Some(0), Some("undionly.kpxe".into()))
    );
    assert_eq!(
        file(&multi(&[6, 0])),
        (Some(0), Some("undionly.kpxe".into()))
    );
    assert_eq!(
        reason(&multi(&[0x1234, 6])),
        IgnoreReason::UnknownArch(0x1234)
    );
}

#[test]
fn several_arches_pick_the_one_the_family_can_fetch() {
    let multi = |class: &[u8], values: &[u16]| {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        Pkt::bare(DISCOVER).opt(60, class).opt(93, &bytes)
    };
    let file = |pkt: &Pkt| {
        let (d, reply) = offer(pkt);
        let m = decode(&reply);
        (
            d.seen.expect("seen").arch,
            opt_str(&m, OptionCode::BootfileName),
        )
    };
    let url = "http://10.99.0.2:8080/tftp/x86_64/ipxe.efi".to_string();
    // An HTTP-boot client listing a TFTP-only arch first still gets its URL ...
    assert_eq!(
        file(&multi(b"HTTPClient:Arch:00016:UNDI:003001", &[7, 16])),
        (Some(16), Some(url.clone()))
    );
    assert_eq!(file(&multi(b"HTTPClient", &[16, 7])), (Some(16), Some(url)));
    // ... and a PXE client listing an HTTP-boot arch first gets a TFTP file, not a URL.
    assert_eq!(
        file(&multi(b"PXEClient", &[16, 7])),
        (Some(7), Some("ipxe.efi".into()))
    );
}

#[test]
fn unknown_arch_is_ignored_but_seen() {
    let d = ignored(&Pkt::pxe(DISCOVER, 0x1234), ArrivalPort::Dhcp);
    assert_eq!(
        d.outcome,
        Outcome::Ignored(IgnoreReason::UnknownArch(0x1234))
    );
    let seen = d.seen.expect("seen");
    assert_eq!(seen.arch, Some(0x1234));
    assert_eq!(seen.mac, MAC);
}

#[test]
fn ipxe_client_gets_script_whatever_the_arch() {
    let pkt = Pkt::pxe(DISCOVER, 0x1234).opt(77, b"iPXE");
    let (_, reply) = offer(&pkt);
    let m = decode(&reply);
    assert_eq!(
        opt_str(&m, OptionCode::BootfileName).as_deref(),
        Some("http://10.99.0.2:8080/ipxe/init.ipxe")
    );
    // Option 175 alone also marks iPXE.
    let (d, _) = offer(&Pkt::pxe(DISCOVER, 7).opt(175, &[0xb1, 0x05, 1, 0x1a, 0xf4, 0x10, 0]));
    assert!(d.seen.expect("seen").is_ipxe);
    // An HTTPClient iPXE keeps its family.
    let (_, reply) = offer(&http_client(7).opt(77, b"iPXE"));
    let m = decode(&reply);
    assert_eq!(
        opt_str(&m, OptionCode::ClassIdentifier).as_deref(),
        Some("HTTPClient")
    );
}

#[test]
fn http_client_with_tftp_only_arch_is_ignored() {
    assert_eq!(
        reason(&http_client(7)),
        IgnoreReason::HttpClientWithoutUrl(7)
    );
}

#[test]
fn not_pxe_without_option_60_or_93() {
    let no60 = Pkt::bare(DISCOVER).opt(93, &[0, 7]);
    let d = ignored(&no60, ArrivalPort::Dhcp);
    assert_eq!(d.outcome, Outcome::Ignored(IgnoreReason::NotPxe));
    assert_eq!(d.seen, None);

    let other_vc = Pkt::bare(DISCOVER).opt(60, b"MSFT 5.0").opt(93, &[0, 7]);
    assert_eq!(reason(&other_vc), IgnoreReason::NotPxe);

    let no93 = Pkt::bare(DISCOVER).opt(60, b"PXEClient:Arch:00007:UNDI:003000");
    let d = ignored(&no93, ArrivalPort::Dhcp);
    assert_eq!(d.outcome, Outcome::Ignored(IgnoreReason::NotPxe));
    let seen = d.seen.expect("PXE-looking, so inventoried");
    assert_eq!(seen.arch, None);
}

#[test]
fn other_message_types_are_ignored() {
    for (mt, name) in [(7, "RELEASE"), (8, "INFORM"), (4, "DECLINE"), (2, "OFFER")] {
        assert_eq!(
            reason(&Pkt::pxe(mt, 7)),
            IgnoreReason::UnsupportedMessageType(mt),
            "{name}"
        );
    }
    let d = ignored(&Pkt::pxe(7, 7), ArrivalPort::Pxe);
    assert_eq!(
        d.outcome,
        Outcome::Ignored(IgnoreReason::UnsupportedMessageType(7))
    );
}

#[test]
fn request_on_67_server_id_rules() {
    let other = Pkt::pxe(REQUEST, 7).opt(54, &[10, 99, 0, 1]);
    assert_eq!(reason(&other), IgnoreReason::RequestNotForUs);
    assert_eq!(reason(&Pkt::pxe(REQUEST, 7)), IgnoreReason::RequestNotForUs);
    let ours = Pkt::pxe(REQUEST, 7).opt(54, &ADV.octets());
    let d = run(&ours.bytes(), ArrivalPort::Dhcp, from_client());
    assert_eq!(d.outcome, Outcome::Acked);
}

#[test]
fn request_on_4011_ignores_server_id() {
    let pkt = Pkt::pxe(REQUEST, 7).opt(54, &[10, 99, 0, 1]);
    let src = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 115), 68);
    let d = run(&pkt.bytes(), ArrivalPort::Pxe, src);
    assert_eq!(d.outcome, Outcome::Acked);
    assert_eq!(d.reply.expect("reply").dest, src);
}

#[test]
fn discover_on_4011_is_ignored() {
    let d = ignored(&Pkt::pxe(DISCOVER, 7), ArrivalPort::Pxe);
    assert_eq!(d.outcome, Outcome::Ignored(IgnoreReason::DiscoverOnPxePort));
}

#[test]
fn boot_reply_and_bootp_are_ignored() {
    let mut reply = Pkt::pxe(DISCOVER, 7);
    reply.op = 2;
    assert_eq!(reason(&reply), IgnoreReason::NotBootRequest);
    let bootp = Pkt {
        options: Vec::new(),
        ..Pkt::bare(DISCOVER)
    }
    .opt(60, b"PXEClient")
    .opt(93, &[0, 0]);
    assert_eq!(reason(&bootp), IgnoreReason::NotDhcp);
}

/// Found by `fuzz/fuzz_targets/dhcp.rs`: a client-chosen ciaddr/giaddr of 255.255.255.255
/// was used as a unicast destination. Non-unicast addresses are skipped (next rule applies).
#[test]
fn client_chosen_non_unicast_addresses_are_not_destinations() {
    for bad in [
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::LOCALHOST,
    ] {
        let mut pkt = Pkt::pxe(DISCOVER, 7);
        pkt.ciaddr = bad;
        let (_, reply) = offer(&pkt);
        assert_eq!(
            reply.dest,
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
            "{bad}"
        );
        assert!(reply.broadcast);
        pkt.giaddr = bad;
        let (_, reply) = offer(&pkt);
        assert_eq!(
            reply.dest,
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
            "{bad}"
        );
        assert!(reply.broadcast);
        let d = run(
            &Pkt::pxe(REQUEST, 7).bytes(),
            ArrivalPort::Pxe,
            SocketAddrV4::new(bad, 4011),
        );
        assert!(d.reply.expect("reply").broadcast, "{bad}");
    }
}

#[test]
fn destination_rules() {
    // ciaddr set, no relay, on 67 → ciaddr:68.
    let mut pkt = Pkt::pxe(DISCOVER, 7);
    pkt.ciaddr = Ipv4Addr::new(10, 99, 0, 77);
    let (_, reply) = offer(&pkt);
    assert_eq!(reply.dest, SocketAddrV4::new(pkt.ciaddr, 68));
    assert!(!reply.broadcast);
    // giaddr beats everything, even on 4011.
    let mut pkt = Pkt::pxe(REQUEST, 7);
    pkt.giaddr = Ipv4Addr::new(192, 0, 2, 1);
    let src = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 115), 4011);
    let d = run(&pkt.bytes(), ArrivalPort::Pxe, src);
    assert_eq!(
        d.reply.expect("reply").dest,
        SocketAddrV4::new(pkt.giaddr, 67)
    );
    // 4011 from 0.0.0.0 → broadcast.
    let d = run(
        &Pkt::pxe(REQUEST, 7).bytes(),
        ArrivalPort::Pxe,
        from_client(),
    );
    let reply = d.reply.expect("reply");
    assert!(reply.broadcast);
    assert_eq!(reply.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
}

#[test]
fn option_97_echo_and_uuid() {
    let mut uuid_opt = [0u8; 17];
    uuid_opt[1..].copy_from_slice(&[0x11; 16]);
    let (d, reply) = offer(&Pkt::pxe(DISCOVER, 7).opt(97, &uuid_opt));
    assert_eq!(d.seen.expect("seen").uuid, Some([0x11; 16]));
    assert_eq!(
        opt(&decode(&reply), OptionCode::ClientMachineIdentifier),
        Some(uuid_opt.to_vec())
    );
    // Non-zero type byte: echoed verbatim, but not taken as a UUID.
    uuid_opt[0] = 1;
    let (d, reply) = offer(&Pkt::pxe(DISCOVER, 7).opt(97, &uuid_opt));
    assert_eq!(d.seen.expect("seen").uuid, None);
    assert_eq!(
        opt(&decode(&reply), OptionCode::ClientMachineIdentifier),
        Some(uuid_opt.to_vec())
    );
}

#[test]
fn bad_option_97_and_94_still_get_an_answer() {
    // A 16-byte option 97 without its type byte (bad Intel ROMs), a short one, an empty one,
    // a 4-byte option 94: answered, option 97 echoed as sent, no UUID taken.
    for value in [&[0x22u8; 16][..], &[0, 1, 2, 3, 4], &[]] {
        let (d, reply) = offer(&Pkt::pxe(DISCOVER, 7).opt(97, value));
        assert_eq!(d.seen.expect("seen").uuid, None, "{value:?}");
        assert_eq!(
            opt(&decode(&reply), OptionCode::ClientMachineIdentifier),
            Some(value.to_vec())
        );
    }
    let (d, _) = offer(&Pkt::pxe(DISCOVER, 7).opt(94, &[1]));
    assert_eq!(d.seen.expect("seen").arch, Some(7));
}

#[test]
fn placeholder_uuids_identify_nothing() {
    let placeholders: [[u8; 16]; 4] = [
        [0; 16],
        [0xff; 16],
        [3, 0, 2, 0, 4, 0, 5, 0, 0, 6, 0, 7, 0, 8, 0, 9],
        [0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9],
    ];
    for p in placeholders {
        let mut uuid_opt = [0u8; 17];
        uuid_opt[1..].copy_from_slice(&p);
        let (d, reply) = offer(&Pkt::pxe(DISCOVER, 7).opt(97, &uuid_opt));
        assert_eq!(d.seen.expect("seen").uuid, None, "{p:?}");
        assert_eq!(
            opt(&decode(&reply), OptionCode::ClientMachineIdentifier),
            Some(uuid_opt.to_vec()),
            "still echoed"
        );
    }
    let mut near = [0xff; 16];
    near[15] = 0xfe;
    assert!(!crate::is_placeholder_uuid(&near));
}

#[test]
fn non_ethernet_client_answered_but_not_inventoried() {
    let mut pkt = Pkt::pxe(DISCOVER, 7);
    pkt.htype = 6;
    let (d, reply) = offer(&pkt);
    assert_eq!(d.seen, None);
    assert_eq!(reply.bytes[1], 6, "htype copied");
}

fn malformed(pkt: &Pkt) -> Malformed {
    match reason(pkt) {
        IgnoreReason::Malformed(m) => m,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn malformed_option_shapes() {
    let bad = |code, len| Malformed::BadOptionLength { code, len };
    let base = || Pkt::bare(DISCOVER).opt(60, b"PXEClient");
    assert_eq!(malformed(&base().opt(93, &[0])), bad(93, 1));
    assert_eq!(malformed(&base().opt(93, &[0, 7, 0])), bad(93, 3));
    assert_eq!(malformed(&base().opt(93, &[])), bad(93, 0));
    assert_eq!(
        malformed(&Pkt::pxe(DISCOVER, 7).opt(54, &[10, 0])),
        bad(54, 2)
    );
    let two_53 = Pkt::pxe(DISCOVER, 7).opt(53, &[1]);
    assert_eq!(
        malformed(&two_53),
        bad(53, 2),
        "repeated options concatenate (RFC 3396)"
    );
}

#[test]
fn malformed_tlv_and_framing() {
    // Length runs past the end (no end option to save it).
    let mut pkt = Pkt::pxe(DISCOVER, 7).raw(&[60, 50, b'P', b'X']);
    pkt.end = false;
    assert!(matches!(
        malformed(&pkt),
        Malformed::OptionOverrun { code: 60, .. }
    ));
    // Code byte with no length byte.
    let mut pkt = Pkt::pxe(DISCOVER, 7).raw(&[77]);
    pkt.end = false;
    assert!(matches!(
        malformed(&pkt),
        Malformed::OptionOverrun { code: 77, .. }
    ));
    // Short and bad-cookie packets.
    let good = Pkt::pxe(DISCOVER, 7).bytes();
    let d = run(&good[..239], ArrivalPort::Dhcp, from_client());
    assert_eq!(
        d.outcome,
        Outcome::Ignored(IgnoreReason::Malformed(Malformed::TooShort(239)))
    );
    let mut bad_cookie = good.clone();
    bad_cookie[238] ^= 0xff;
    let d = run(&bad_cookie, ArrivalPort::Dhcp, from_client());
    assert_eq!(
        d.outcome,
        Outcome::Ignored(IgnoreReason::Malformed(Malformed::BadCookie))
    );
    let d = run(&[], ArrivalPort::Pxe, from_client());
    assert_eq!(
        d.outcome,
        Outcome::Ignored(IgnoreReason::Malformed(Malformed::TooShort(0)))
    );
    let huge = vec![0u8; 70_000];
    let d = run(&huge, ArrivalPort::Dhcp, from_client());
    assert_eq!(
        d.outcome,
        Outcome::Ignored(IgnoreReason::Malformed(Malformed::TooLong(70_000)))
    );
}

#[test]
fn missing_end_option_and_padding_accepted() {
    let mut pkt = Pkt::pxe(DISCOVER, 7).raw(&[0, 0, 0]);
    pkt.end = false;
    offer(&pkt);
    // Bytes after the end option are not parsed.
    let pkt = Pkt::pxe(DISCOVER, 7).raw(&[255, 93, 40]);
    offer(&pkt);
}

#[test]
fn split_option_60_is_reassembled() {
    let pkt = Pkt::bare(DISCOVER)
        .opt(60, b"PXECl")
        .opt(93, &[0, 7])
        .opt(60, b"ient:Arch:00007");
    let (d, _) = offer(&pkt);
    assert_eq!(d.seen.expect("seen").vendor_class, "PXEClient:Arch:00007");
}

#[test]
fn several_split_options_are_each_reassembled_in_order() {
    let mut uuid_opt = [0u8; 17];
    uuid_opt[1..].copy_from_slice(&[0x42; 16]);
    let pkt = Pkt::bare(DISCOVER)
        .opt(97, &uuid_opt[..5])
        .opt(60, b"PXE")
        .opt(93, &[0x12, 0x34])
        .opt(97, &uuid_opt[5..])
        .opt(60, b"Client:Arch:")
        .opt(93, &[0, 7])
        .opt(60, b"00007");
    let (d, reply) = offer(&pkt);
    let seen = d.seen.expect("seen");
    assert_eq!(seen.vendor_class, "PXEClient:Arch:00007");
    assert_eq!(seen.uuid, Some([0x42; 16]));
    // 0x1234 has no boot file; the second value of the reassembled 93 list is chosen.
    assert_eq!(seen.arch, Some(7));
    assert_eq!(
        opt(&decode(&reply), OptionCode::ClientMachineIdentifier),
        Some(uuid_opt.to_vec())
    );
}

#[test]
fn overload_option_52_is_ignored() {
    // Option 93 hidden in the `file` field with overload = 1: not parsed.
    let mut pkt = Pkt::bare(DISCOVER).opt(60, b"PXEClient").opt(52, &[1]);
    pkt.file[..5].copy_from_slice(&[93, 2, 0, 7, 255]);
    assert_eq!(reason(&pkt), IgnoreReason::NotPxe);
    // With a real option 93 it is answered normally.
    let (_, reply) = offer(&Pkt::pxe(DISCOVER, 7).opt(52, &[3]));
    assert_eq!(file_header(&reply), "ipxe.efi");
}
