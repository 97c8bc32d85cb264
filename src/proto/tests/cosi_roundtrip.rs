//! Encode → decode → encode round trips of every COSI state and Omni spec message, byte for
//! byte, plus hand-made wire bytes pinning the field numbers from omni-wire.md.
//! (Maps hold one entry where bytes are compared: prost's `HashMap` order is not stable.)

use std::collections::HashMap;

use prost::Message;
use prost_types::Timestamp;
use rackboot_proto::cosi::resource::*;
use rackboot_proto::omni::specs::*;

fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M) {
    let bytes = m.encode_to_vec();
    assert!(
        !bytes.is_empty(),
        "sample of {} must not be empty",
        std::any::type_name::<M>()
    );
    let back = match M::decode(bytes.as_slice()) {
        Ok(b) => b,
        Err(e) => panic!("decode {}: {e}", std::any::type_name::<M>()),
    };
    assert_eq!(&back, m);
    assert_eq!(
        back.encode_to_vec(),
        bytes,
        "re-encoding {} differs",
        std::any::type_name::<M>()
    );
}

fn ts(s: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: s,
        nanos: 7,
    })
}

fn one(k: &str, v: &str) -> HashMap<String, String> {
    HashMap::from([(k.to_string(), v.to_string())])
}

fn metadata() -> Metadata {
    Metadata {
        namespace: "infra-provider".into(),
        r#type: "InfraMachines.omni.sidero.dev".into(),
        id: "4c4c4544-0042-3510-8052-b4c04f4d4e31".into(),
        version: "12".into(),
        owner: "InfraMachineController".into(),
        phase: "tearingDown".into(),
        created: ts(1_700_000_000),
        updated: ts(1_700_000_100),
        finalizers: vec!["rackboot".into(), "other".into()],
        labels: one("omni.sidero.dev/infra-provider-id", "rack-1"),
        annotations: one("a", "b"),
    }
}

fn resource() -> Resource {
    Resource {
        metadata: Some(metadata()),
        spec: Some(Spec {
            proto_spec: InfraMachineSpec {
                acceptance_status: 1,
                ..Default::default()
            }
            .encode_to_vec(),
            yaml_spec: "acceptancestatus: 1\n".into(),
        }),
    }
}

fn label_query() -> LabelQuery {
    LabelQuery {
        terms: vec![
            LabelTerm {
                key: "omni.sidero.dev/cluster".into(),
                op: label_term::Operation::In as i32,
                value: vec!["c1".into(), "c2".into()],
                invert: true,
            },
            LabelTerm {
                key: "k".into(),
                op: label_term::Operation::LteNumeric as i32,
                value: vec!["10Gi".into()],
                invert: false,
            },
        ],
    }
}

#[test]
fn cosi_state_messages_roundtrip() {
    roundtrip(&metadata());
    roundtrip(&Spec {
        proto_spec: vec![1, 2, 3],
        yaml_spec: "x: 1".into(),
    });
    roundtrip(&resource());
    roundtrip(&label_query());
    roundtrip(&IdQuery {
        regexp: "^m-".into(),
    });
    let event = Event {
        resource: Some(resource()),
        event_type: EventType::Updated as i32,
        old: Some(resource()),
        error: Some("overrun".into()),
        bookmark: Some(vec![0xde, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
    };
    roundtrip(&event);
    roundtrip(&GetRequest {
        namespace: "meta".into(),
        r#type: "ResourceDefinitions.meta.cosi.dev".into(),
        id: "providerjoinconfigs.omni.sidero.dev".into(),
        options: Some(GetOptions {}),
    });
    roundtrip(&GetResponse {
        resource: Some(resource()),
    });
    roundtrip(&ListRequest {
        namespace: "infra-provider".into(),
        r#type: "InfraMachines.omni.sidero.dev".into(),
        options: Some(ListOptions {
            label_query: vec![label_query()],
            id_query: Some(IdQuery {
                regexp: ".*".into(),
            }),
        }),
    });
    roundtrip(&ListResponse {
        resource: Some(resource()),
    });
    roundtrip(&CreateRequest {
        resource: Some(resource()),
        options: Some(CreateOptions {
            owner: "rackboot".into(),
        }),
    });
    roundtrip(&CreateResponse {
        resource: Some(resource()),
    });
    roundtrip(&UpdateRequest {
        new_resource: Some(resource()),
        options: Some(UpdateOptions {
            owner: "rackboot".into(),
            expected_phase: Some("running".into()),
        }),
    });
    roundtrip(&UpdateResponse {
        resource: Some(resource()),
    });
    roundtrip(&DestroyRequest {
        namespace: "infra-provider".into(),
        r#type: "InfraMachineStatuses.omni.sidero.dev".into(),
        id: "m".into(),
        options: Some(DestroyOptions {
            owner: "rackboot".into(),
        }),
    });
    roundtrip(&WatchRequest {
        namespace: "infra-provider".into(),
        r#type: "InfraMachines.omni.sidero.dev".into(),
        id: Some("m".into()),
        options: Some(WatchOptions {
            bootstrap_contents: true,
            tail_events: 3,
            label_query: vec![label_query()],
            id_query: Some(IdQuery { regexp: "m".into() }),
            aggregated: true,
            start_from_bookmark: Some(vec![1; 16]),
            bootstrap_bookmark: true,
        }),
        api_version: 1,
    });
    roundtrip(&WatchResponse {
        event: vec![event.clone(), event],
    });
    roundtrip(&TeardownRequest {
        namespace: "infra-provider".into(),
        r#type: "InfraMachineStatuses.omni.sidero.dev".into(),
        id: "m".into(),
        options: Some(TeardownOptions {
            owner: "rackboot".into(),
        }),
    });
    roundtrip(&TeardownResponse {
        destroy_ready: true,
    });
    // Empty messages encode to nothing and decode back.
    assert!(DestroyResponse {}.encode_to_vec().is_empty());
    assert_eq!(
        DestroyResponse::decode(&[][..]).ok(),
        Some(DestroyResponse {})
    );
    // Many map entries: equal after decoding (order is free on the wire).
    let mut m = metadata();
    m.labels = (0..20)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    let back = Metadata::decode(m.encode_to_vec().as_slice()).expect("decode");
    assert_eq!(back, m);
}

#[test]
fn omni_spec_messages_roundtrip() {
    roundtrip(&InfraProviderStatusSpec {
        schema: "{}".into(),
        name: "rackboot".into(),
        description: "static".into(),
        icon: "PHN2Zz48L3N2Zz4=".into(),
        version: "0.1.0".into(),
    });
    roundtrip(&InfraProviderHealthStatusSpec {
        last_heartbeat_timestamp: ts(1_700_000_000),
        error: "bmc unreachable".into(),
    });
    roundtrip(&InfraMachineSpec {
        preferred_power_state: infra_machine_spec::MachinePowerState::PowerStateOn as i32,
        acceptance_status: infra_machine_spec::AcceptanceStatus::Rejected as i32,
        cluster_talos_version: "v1.9.5".into(),
        extensions: vec!["siderolabs/iscsi-tools".into()],
        wipe_id: "w".into(),
        extra_kernel_args: "console=ttyS0".into(),
        requested_reboot_id: "r".into(),
        cordoned: true,
        install_event_id: 42,
        node_unique_token: "t".into(),
        power_off_request_id: "p".into(),
    });
    roundtrip(&InfraMachineStatusSpec {
        power_state: infra_machine_status_spec::MachinePowerState::PowerStateOff as i32,
        ready_to_use: true,
        last_reboot_id: "r".into(),
        last_reboot_timestamp: ts(5),
        installed: true,
        wiped_node_unique_token: "t".into(),
        last_power_off_id: "p".into(),
    });
    roundtrip(&BmcConfigSpec {
        config: Some(bmc_config_spec::Config {
            ipmi: Some(bmc_config_spec::Ipmi {
                address: "10.0.0.5".into(),
                port: 623,
                username: "admin".into(),
                password: "pw".into(),
            }),
            api: Some(bmc_config_spec::Api {
                address: "https://bmc".into(),
            }),
        }),
    });
    roundtrip(&ProviderJoinConfigSpec {
        config: Some(provider_join_config_spec::JoinConfig {
            kernel_args: vec!["siderolink.api=grpc://omni".into()],
            config: "apiVersion: v1alpha1\n".into(),
        }),
        join_token: "tok".into(),
    });
}

/// Hand-encoded bytes: field numbers and wire types exactly as in omni-wire.md.
#[test]
fn field_numbers_match_the_wire_facts() {
    // Metadata: 4 version (string), 9 finalizers, 10 labels (map entry: 1 key, 2 value).
    let md = Metadata {
        version: "1".into(),
        finalizers: vec!["f".into()],
        labels: one("k", "v"),
        ..Default::default()
    };
    assert_eq!(
        md.encode_to_vec(),
        vec![0x22, 1, b'1', 0x4a, 1, b'f', 0x52, 6, 0x0a, 1, b'k', 0x12, 1, b'v']
    );
    // LabelTerm: 1 key, 2 op (varint), 3 value, 5 invert (4 unused).
    let t = LabelTerm {
        key: "k".into(),
        op: label_term::Operation::LtNumeric as i32,
        value: vec!["1".into()],
        invert: true,
    };
    assert_eq!(
        t.encode_to_vec(),
        vec![0x0a, 1, b'k', 0x10, 6, 0x1a, 1, b'1', 0x28, 1]
    );
    // Event: 2 event_type, 5 bookmark.
    let e = Event {
        event_type: EventType::Bootstrapped as i32,
        bookmark: Some(vec![9]),
        ..Default::default()
    };
    assert_eq!(e.encode_to_vec(), vec![0x10, 3, 0x2a, 1, 9]);
    // UpdateRequest: 2 new_resource (1 is reserved), 3 options {2 expected_phase}.
    let u = UpdateRequest {
        new_resource: Some(Resource::default()),
        options: Some(UpdateOptions {
            owner: String::new(),
            expected_phase: Some("running".into()),
        }),
    };
    let mut want = vec![0x12, 0, 0x1a, 9, 0x12, 7];
    want.extend_from_slice(b"running");
    assert_eq!(u.encode_to_vec(), want);
    // WatchRequest: 3 id (optional, present even if empty), 5 api_version; WatchOptions 6/7.
    let w = WatchRequest {
        id: Some(String::new()),
        options: Some(WatchOptions {
            start_from_bookmark: Some(vec![]),
            bootstrap_bookmark: true,
            ..Default::default()
        }),
        api_version: 1,
        ..Default::default()
    };
    assert_eq!(
        w.encode_to_vec(),
        vec![0x1a, 0, 0x22, 4, 0x32, 0, 0x38, 1, 0x28, 1]
    );
    // InfraMachineSpec: 9 install_event_id (uint64), 11 power_off_request_id.
    let s = InfraMachineSpec {
        install_event_id: 300,
        power_off_request_id: "p".into(),
        ..Default::default()
    };
    assert_eq!(s.encode_to_vec(), vec![0x48, 0xac, 0x02, 0x5a, 1, b'p']);
    // InfraMachineStatusSpec: 7 last_power_off_id; BMC IPMI port 2 (uint32).
    let st = InfraMachineStatusSpec {
        last_power_off_id: "x".into(),
        ..Default::default()
    };
    assert_eq!(st.encode_to_vec(), vec![0x3a, 1, b'x']);
    let ipmi = bmc_config_spec::Ipmi {
        port: 623,
        ..Default::default()
    };
    assert_eq!(ipmi.encode_to_vec(), vec![0x10, 0xef, 0x04]);
}
