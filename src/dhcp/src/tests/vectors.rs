//! Real client packets from the lab captures (see testdata/README.md).

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{Flags, OptionCode};

use super::*;
use crate::{IgnoreReason, Outcome};

pub(crate) const BIOS_IPXE_DISCOVER: &[u8] =
    include_bytes!("../../testdata/bios-ipxe-discover.bin");
pub(crate) const BIOS_IPXE_REQUEST_67: &[u8] =
    include_bytes!("../../testdata/bios-ipxe-request-67.bin");
pub(crate) const BIOS_IPXE_REQUEST_4011: &[u8] =
    include_bytes!("../../testdata/bios-ipxe-request-4011.bin");
pub(crate) const OVMF_DISCOVER: &[u8] = include_bytes!("../../testdata/ovmf-discover.bin");
pub(crate) const OVMF_REQUEST_67: &[u8] = include_bytes!("../../testdata/ovmf-request-67.bin");
pub(crate) const OVMF_REQUEST_4011: &[u8] = include_bytes!("../../testdata/ovmf-request-4011.bin");
pub(crate) const IPXE_EFI_DISCOVER: &[u8] = include_bytes!("../../testdata/ipxe-efi-discover.bin");
pub(crate) const IPXE_EFI_REQUEST_4011: &[u8] =
    include_bytes!("../../testdata/ipxe-efi-request-4011.bin");
pub(crate) const PERFDHCP_DISCOVER: &[u8] = include_bytes!("../../testdata/perfdhcp-discover.bin");
pub(crate) const PERFDHCP_REQUEST: &[u8] = include_bytes!("../../testdata/perfdhcp-request.bin");

pub(crate) const ALL: &[&[u8]] = &[
    BIOS_IPXE_DISCOVER,
    BIOS_IPXE_REQUEST_67,
    BIOS_IPXE_REQUEST_4011,
    OVMF_DISCOVER,
    OVMF_REQUEST_67,
    OVMF_REQUEST_4011,
    IPXE_EFI_DISCOVER,
    IPXE_EFI_REQUEST_4011,
    PERFDHCP_DISCOVER,
    PERFDHCP_REQUEST,
];

const VM_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x99, 0x00, 0x10];
const VM_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 115);
/// Option 97 as QEMU sends it without `-uuid`: type 0 + 16 zero bytes.
const ZERO_UUID_OPT: [u8; 17] = [0; 17];
const SCRIPT_URL: &str = "http://10.99.0.2:8080/ipxe/init.ipxe";

fn chaddr16(mac: [u8; 6]) -> Vec<u8> {
    let mut c = mac.to_vec();
    c.resize(16, 0);
    c
}

#[test]
fn ovmf_discover_gets_tftp_ipxe_efi_offer() {
    let d = run(OVMF_DISCOVER, ArrivalPort::Dhcp, from_client());
    assert_eq!(d.outcome, Outcome::Offered);
    let reply = d.reply.expect("reply");
    check_reply_invariants(&reply);
    assert_eq!(reply.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    assert!(reply.broadcast);

    let m = decode(&reply);
    assert_eq!(m.opcode(), dhcproto::v4::Opcode::BootReply);
    assert_eq!(m.xid(), 0x6fe2_af09);
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.siaddr(), ADV);
    assert_eq!(m.giaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.chaddr(), &VM_MAC);
    assert_eq!(&reply.bytes[28..44], chaddr16(VM_MAC).as_slice());
    assert_eq!(m.flags(), Flags::default().set_broadcast()); // copied (8000)
    assert_eq!(msg_type(&m), Some(MessageType::Offer));
    assert_eq!(server_id(&m), Some(ADV));
    assert_eq!(
        opt_str(&m, OptionCode::ClassIdentifier).as_deref(),
        Some("PXEClient")
    );
    assert_eq!(
        opt(&m, OptionCode::ClientMachineIdentifier),
        Some(ZERO_UUID_OPT.to_vec())
    );
    assert_eq!(
        opt_str(&m, OptionCode::TFTPServerName).as_deref(),
        Some("10.99.0.2")
    );
    assert_eq!(
        opt_str(&m, OptionCode::BootfileName).as_deref(),
        Some("ipxe.efi")
    );
    assert_eq!(
        opt(&m, OptionCode::VendorExtensions),
        None,
        "option 43 is off by default"
    );
    assert_eq!(file_header(&reply), "ipxe.efi");
    assert_eq!(sname_header(&reply), "10.99.0.2");

    let seen = d.seen.expect("seen");
    assert_eq!(seen.mac, VM_MAC);
    assert_eq!(seen.arch, Some(7));
    assert_eq!(seen.vendor_class, "PXEClient:Arch:00007:UNDI:003000");
    assert_eq!(seen.uuid, None, "all-zero UUID is not an identity");
    assert_eq!(seen.msg_type, MessageType::Discover);
    assert!(!seen.is_ipxe);
    assert_eq!(seen.user_class, None);
}

#[test]
fn ovmf_4011_request_gets_ack_unicast_to_source_port_4011() {
    let src = SocketAddrV4::new(VM_IP, 4011);
    let d = run(OVMF_REQUEST_4011, ArrivalPort::Pxe, src);
    assert_eq!(d.outcome, Outcome::Acked);
    let reply = d.reply.expect("reply");
    check_reply_invariants(&reply);
    assert_eq!(reply.dest, src);
    assert!(!reply.broadcast);

    let m = decode(&reply);
    assert_eq!(m.xid(), 0x852e_5c25);
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.ciaddr(), VM_IP);
    assert_eq!(m.siaddr(), ADV);
    assert_eq!(m.giaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.chaddr(), &VM_MAC);
    assert_eq!(m.flags(), Flags::default());
    assert_eq!(msg_type(&m), Some(MessageType::Ack));
    assert_eq!(server_id(&m), Some(ADV));
    assert_eq!(
        opt_str(&m, OptionCode::ClassIdentifier).as_deref(),
        Some("PXEClient")
    );
    assert_eq!(
        opt(&m, OptionCode::ClientMachineIdentifier),
        Some(ZERO_UUID_OPT.to_vec())
    );
    assert_eq!(
        opt_str(&m, OptionCode::TFTPServerName).as_deref(),
        Some("10.99.0.2")
    );
    assert_eq!(
        opt_str(&m, OptionCode::BootfileName).as_deref(),
        Some("ipxe.efi")
    );
    assert_eq!(file_header(&reply), "ipxe.efi");
    assert_eq!(d.seen.expect("seen").msg_type, MessageType::Request);
}

#[test]
fn bios_ipxe_rom_discover_gets_boot_script_not_undionly() {
    let d = run(BIOS_IPXE_DISCOVER, ArrivalPort::Dhcp, from_client());
    assert_eq!(d.outcome, Outcome::Offered);
    let reply = d.reply.expect("reply");
    check_reply_invariants(&reply);
    assert_eq!(reply.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    assert!(reply.broadcast);

    let m = decode(&reply);
    assert_eq!(m.xid(), 0x67f9_3415);
    assert_eq!(m.siaddr(), ADV);
    assert_eq!(m.giaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.chaddr(), &VM_MAC);
    assert_eq!(m.flags(), Flags::default()); // client sent 0000
    assert_eq!(msg_type(&m), Some(MessageType::Offer));
    assert_eq!(server_id(&m), Some(ADV));
    assert_eq!(
        opt_str(&m, OptionCode::ClassIdentifier).as_deref(),
        Some("PXEClient")
    );
    assert_eq!(
        opt(&m, OptionCode::ClientMachineIdentifier),
        Some(ZERO_UUID_OPT.to_vec())
    );
    assert_eq!(
        opt_str(&m, OptionCode::BootfileName).as_deref(),
        Some(SCRIPT_URL)
    );
    assert_eq!(
        opt(&m, OptionCode::TFTPServerName),
        None,
        "no option 66 for a URL"
    );
    assert_eq!(file_header(&reply), SCRIPT_URL);
    assert_eq!(sname_header(&reply), "");

    let seen = d.seen.expect("seen");
    assert_eq!(seen.arch, Some(0));
    assert!(seen.is_ipxe);
    assert_eq!(seen.user_class.as_deref(), Some("iPXE"));
    assert_eq!(seen.vendor_class, "PXEClient:Arch:00000:UNDI:002001");
}

#[test]
fn bios_ipxe_4011_request_acked_to_source_port_68() {
    let src = SocketAddrV4::new(VM_IP, 68);
    let d = run(BIOS_IPXE_REQUEST_4011, ArrivalPort::Pxe, src);
    assert_eq!(d.outcome, Outcome::Acked);
    let reply = d.reply.expect("reply");
    check_reply_invariants(&reply);
    assert_eq!(reply.dest, src);
    let m = decode(&reply);
    assert_eq!(m.xid(), 0);
    assert_eq!(m.ciaddr(), VM_IP);
    assert_eq!(m.flags(), Flags::default().set_broadcast());
    assert_eq!(msg_type(&m), Some(MessageType::Ack));
    assert_eq!(
        opt_str(&m, OptionCode::BootfileName).as_deref(),
        Some(SCRIPT_URL)
    );
    assert_eq!(file_header(&reply), SCRIPT_URL);
}

#[test]
fn chained_ipxe_efi_discover_gets_boot_script() {
    let d = run(IPXE_EFI_DISCOVER, ArrivalPort::Dhcp, from_client());
    assert_eq!(d.outcome, Outcome::Offered);
    let reply = d.reply.expect("reply");
    check_reply_invariants(&reply);
    let m = decode(&reply);
    assert_eq!(m.xid(), 0x5d06_f543);
    assert_eq!(m.chaddr(), &VM_MAC);
    assert_eq!(
        opt_str(&m, OptionCode::ClassIdentifier).as_deref(),
        Some("PXEClient")
    );
    assert_eq!(
        opt_str(&m, OptionCode::BootfileName).as_deref(),
        Some(SCRIPT_URL)
    );
    assert_eq!(opt(&m, OptionCode::TFTPServerName), None);
    assert_eq!(file_header(&reply), SCRIPT_URL);
    let seen = d.seen.expect("seen");
    assert_eq!(seen.arch, Some(7));
    assert!(seen.is_ipxe);
}

#[test]
fn chained_ipxe_efi_4011_request_acked() {
    let src = SocketAddrV4::new(VM_IP, 68);
    let d = run(IPXE_EFI_REQUEST_4011, ArrivalPort::Pxe, src);
    assert_eq!(d.outcome, Outcome::Acked);
    let reply = d.reply.expect("reply");
    assert_eq!(reply.dest, src);
    let m = decode(&reply);
    assert_eq!(
        opt_str(&m, OptionCode::BootfileName).as_deref(),
        Some(SCRIPT_URL)
    );
}

#[test]
fn perfdhcp_relayed_discover_unicast_to_giaddr_67() {
    let relay = Ipv4Addr::new(10, 99, 0, 50);
    let d = run(
        PERFDHCP_DISCOVER,
        ArrivalPort::Dhcp,
        SocketAddrV4::new(relay, 67),
    );
    assert_eq!(d.outcome, Outcome::Offered);
    let reply = d.reply.expect("reply");
    check_reply_invariants(&reply);
    assert_eq!(reply.dest, SocketAddrV4::new(relay, 67));
    assert!(!reply.broadcast);

    let m = decode(&reply);
    let mac = [0x00, 0x0c, 0x01, 0x02, 0x03, 0x04];
    assert_eq!(m.xid(), 0);
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.siaddr(), ADV);
    assert_eq!(m.giaddr(), relay);
    assert_eq!(m.chaddr(), &mac);
    assert_eq!(m.flags(), Flags::default());
    assert_eq!(msg_type(&m), Some(MessageType::Offer));
    assert_eq!(server_id(&m), Some(ADV));
    assert_eq!(
        opt_str(&m, OptionCode::ClassIdentifier).as_deref(),
        Some("PXEClient")
    );
    assert_eq!(
        opt(&m, OptionCode::ClientMachineIdentifier),
        None,
        "not sent, not echoed"
    );
    assert_eq!(
        opt_str(&m, OptionCode::TFTPServerName).as_deref(),
        Some("10.99.0.2")
    );
    assert_eq!(
        opt_str(&m, OptionCode::BootfileName).as_deref(),
        Some("ipxe.efi")
    );
    assert_eq!(file_header(&reply), "ipxe.efi");
    let seen = d.seen.expect("seen");
    assert_eq!(seen.mac, mac);
    assert_eq!(seen.arch, Some(7));
}

#[test]
fn requests_on_67_for_the_site_server_are_not_for_us() {
    let relay = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 50), 67);
    for (bytes, src) in [
        (BIOS_IPXE_REQUEST_67, from_client()),
        (OVMF_REQUEST_67, from_client()),
        (PERFDHCP_REQUEST, relay),
    ] {
        let d = run(bytes, ArrivalPort::Dhcp, src);
        assert_eq!(d.outcome, Outcome::Ignored(IgnoreReason::RequestNotForUs));
        assert!(d.reply.is_none());
        assert_eq!(
            d.seen.expect("still inventoried").msg_type,
            MessageType::Request
        );
    }
}

#[test]
fn request_on_67_naming_us_is_acked() {
    // Same OVMF REQUEST, but we are the server it names (10.99.0.1).
    let config = ProxyConfig::new(Ipv4Addr::new(10, 99, 0, 1), HTTP_PORT).expect("config");
    let d = handle(OVMF_REQUEST_67, ArrivalPort::Dhcp, from_client(), &config);
    assert_eq!(d.outcome, Outcome::Acked);
    let reply = d.reply.expect("reply");
    check_reply_invariants(&reply);
    assert!(reply.broadcast);
    let m = decode(&reply);
    assert_eq!(msg_type(&m), Some(MessageType::Ack));
    assert_eq!(server_id(&m), Some(Ipv4Addr::new(10, 99, 0, 1)));
}

#[test]
fn replies_are_deterministic_and_start_with_option_53() {
    for bytes in ALL {
        let a = run(bytes, ArrivalPort::Dhcp, from_client());
        let b = run(bytes, ArrivalPort::Dhcp, from_client());
        assert_eq!(a, b);
        if let Some(reply) = a.reply {
            let mt = if a.outcome == Outcome::Offered { 2 } else { 5 };
            assert_eq!(&reply.bytes[240..243], &[53, 1, mt]);
            assert_eq!(&reply.bytes[243..249], &[54, 4, 10, 99, 0, 2]);
        }
    }
}

#[test]
fn discovery_control_adds_option_43() {
    let config = cfg().with_discovery_control(true);
    let d = handle(OVMF_DISCOVER, ArrivalPort::Dhcp, from_client(), &config);
    let m = decode(&d.reply.expect("reply"));
    assert_eq!(
        opt(&m, OptionCode::VendorExtensions),
        Some(vec![6, 1, 8, 255])
    );
}

#[test]
fn override_replaces_the_table_file() {
    let config = cfg()
        .with_file_override(7, "snponly.efi")
        .expect("override");
    let d = handle(OVMF_DISCOVER, ArrivalPort::Dhcp, from_client(), &config);
    let reply = d.reply.expect("reply");
    let m = decode(&reply);
    assert_eq!(
        opt_str(&m, OptionCode::BootfileName).as_deref(),
        Some("snponly.efi")
    );
    assert_eq!(file_header(&reply), "snponly.efi");
    // iPXE clients still get the script, overrides or not.
    let d = handle(IPXE_EFI_DISCOVER, ArrivalPort::Dhcp, from_client(), &config);
    let m = decode(&d.reply.expect("reply"));
    assert_eq!(
        opt_str(&m, OptionCode::BootfileName).as_deref(),
        Some(SCRIPT_URL)
    );
}
