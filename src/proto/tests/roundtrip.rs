//! Encode → decode → encode round trips of the agent link messages.

use prost::Message;
use rackboot_proto::agent::v1::{
    agent_message, appliance_message, command, AgentMessage, ApplianceMessage, BmcInfo, Command,
    CommandResult, Cpu, Disk, HardwareReport, Heartbeat, Hello, Nic, Progress, SetBmcUser,
    SystemInfo, Wipe,
};

fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M) -> M {
    let bytes = m.encode_to_vec();
    let back = match M::decode(bytes.as_slice()) {
        Ok(b) => b,
        Err(e) => panic!("decode failed: {e}"),
    };
    assert_eq!(&back, m);
    assert_eq!(back.encode_to_vec(), bytes, "re-encoding differs");
    back
}

#[test]
fn agent_messages_roundtrip() {
    let msgs = [
        agent_message::Msg::Hello(Hello {
            machine_id: "m-1".into(),
            uuid: "4c4c4544-0042-3510-8052-b4c04f4d4e31".into(),
            boot_mac: "52:54:00:12:34:56".into(),
            agent_version: "0.1.0".into(),
            boot_token: "0123456789abcdef0123456789abcdef".into(),
        }),
        agent_message::Msg::Report(HardwareReport {
            system: Some(SystemInfo {
                uuid: "u".into(),
                vendor: "QEMU".into(),
                product: "Standard PC".into(),
                serial: "S1".into(),
            }),
            cpus: vec![Cpu {
                model: "Xeon".into(),
                cores: 8,
                threads: 16,
            }],
            memory_bytes: 64 << 30,
            disks: vec![Disk {
                name: "nvme0n1".into(),
                size_bytes: 1 << 40,
                model: "Samsung".into(),
                serial: "X".into(),
                rotational: false,
            }],
            nics: vec![Nic {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".into(),
                driver: "virtio_net".into(),
                speed_mbps: 10_000,
                link_up: true,
            }],
            bmc: Some(BmcInfo {
                present: true,
                ip: "10.0.0.5".into(),
                mac: String::new(),
            }),
        }),
        agent_message::Msg::Heartbeat(Heartbeat { uptime_secs: 42 }),
        agent_message::Msg::Result(CommandResult {
            command_id: 7,
            ok: true,
            error: String::new(),
            detail_json: r#"{"disks":[]}"#.into(),
        }),
        agent_message::Msg::Progress(Progress {
            command_id: 7,
            disk: "sda".into(),
            done_bytes: 5,
            total_bytes: 100,
        }),
    ];
    for m in msgs {
        roundtrip(&AgentMessage { msg: Some(m) });
    }
}

#[test]
fn appliance_messages_roundtrip() {
    let kinds = [
        command::Kind::Wipe(Wipe { full: true }),
        command::Kind::Reboot(Default::default()),
        command::Kind::PowerOff(Default::default()),
        command::Kind::SetBmcUser(SetBmcUser {
            username: "rackboot".into(),
            password: "secret".into(),
            slot: 3,
        }),
    ];
    for (i, k) in kinds.into_iter().enumerate() {
        roundtrip(&ApplianceMessage {
            msg: Some(appliance_message::Msg::Command(Command {
                id: i as u64 + 1,
                kind: Some(k),
            })),
        });
    }
}

#[test]
fn wire_bytes_are_stable() {
    // Field numbers are a contract: Heartbeat{uptime_secs: 1} inside AgentMessage field 3.
    let m = AgentMessage {
        msg: Some(agent_message::Msg::Heartbeat(Heartbeat { uptime_secs: 1 })),
    };
    assert_eq!(m.encode_to_vec(), vec![0x1a, 0x02, 0x08, 0x01]);
    // Command{id: 1, wipe: {full: true}} inside ApplianceMessage field 1.
    let c = ApplianceMessage {
        msg: Some(appliance_message::Msg::Command(Command {
            id: 1,
            kind: Some(command::Kind::Wipe(Wipe { full: true })),
        })),
    };
    assert_eq!(
        c.encode_to_vec(),
        vec![0x0a, 0x06, 0x08, 0x01, 0x12, 0x02, 0x08, 0x01]
    );
}
