//! Resources as JSON for the control API: metadata plus the spec decoded for the Omni types the
//! double knows (other specs as base64). Secrets (BMC password, join token) are never shown,
//! only whether they are set.

use base64::Engine as _;
use prost::Message as _;
use rackboot_proto::cosi::resource::{Metadata, Resource};
use rackboot_proto::omni::specs::{
    infra_machine_spec, infra_machine_status_spec, BmcConfigSpec, InfraMachineSpec,
    InfraMachineStatusSpec, InfraProviderHealthStatusSpec, InfraProviderStatusSpec,
    ProviderJoinConfigSpec,
};
use serde_json::{json, Value};

use crate::names::*;

fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    match t {
        Some(t) => json!({"seconds": t.seconds, "nanos": t.nanos}),
        None => Value::Null,
    }
}

fn metadata(m: &Metadata) -> Value {
    let labels: std::collections::BTreeMap<_, _> = m.labels.iter().collect();
    let annotations: std::collections::BTreeMap<_, _> = m.annotations.iter().collect();
    json!({
        "namespace": m.namespace, "type": m.r#type, "id": m.id, "version": m.version,
        "owner": m.owner, "phase": m.phase, "created": ts(&m.created), "updated": ts(&m.updated),
        "finalizers": m.finalizers, "labels": labels, "annotations": annotations,
    })
}

fn secret(s: &str) -> Value {
    if s.is_empty() {
        json!("")
    } else {
        json!("<redacted>")
    }
}

fn spec(ty: &str, b: &[u8]) -> Option<Value> {
    Some(match ty {
        TYPE_INFRA_MACHINE => {
            let s = InfraMachineSpec::decode(b).ok()?;
            let power = infra_machine_spec::MachinePowerState::try_from(s.preferred_power_state)
                .map_or("UNKNOWN", |p| p.as_str_name());
            let acc = infra_machine_spec::AcceptanceStatus::try_from(s.acceptance_status)
                .map_or("UNKNOWN", |p| p.as_str_name());
            json!({
                "preferred_power_state": power, "acceptance_status": acc,
                "cluster_talos_version": s.cluster_talos_version, "extensions": s.extensions,
                "wipe_id": s.wipe_id, "extra_kernel_args": s.extra_kernel_args,
                "requested_reboot_id": s.requested_reboot_id, "cordoned": s.cordoned,
                "install_event_id": s.install_event_id, "node_unique_token": s.node_unique_token,
                "power_off_request_id": s.power_off_request_id,
            })
        }
        TYPE_INFRA_MACHINE_STATUS => {
            let s = InfraMachineStatusSpec::decode(b).ok()?;
            let power = infra_machine_status_spec::MachinePowerState::try_from(s.power_state)
                .map_or("UNKNOWN", |p| p.as_str_name());
            json!({
                "power_state": power, "ready_to_use": s.ready_to_use,
                "last_reboot_id": s.last_reboot_id,
                "last_reboot_timestamp": ts(&s.last_reboot_timestamp), "installed": s.installed,
                "wiped_node_unique_token": s.wiped_node_unique_token,
                "last_power_off_id": s.last_power_off_id,
            })
        }
        TYPE_PROVIDER_STATUS => {
            let s = InfraProviderStatusSpec::decode(b).ok()?;
            json!({"schema": s.schema, "name": s.name, "description": s.description,
                   "icon": s.icon, "version": s.version})
        }
        TYPE_PROVIDER_HEALTH => {
            let s = InfraProviderHealthStatusSpec::decode(b).ok()?;
            json!({"last_heartbeat_timestamp": ts(&s.last_heartbeat_timestamp), "error": s.error})
        }
        TYPE_BMC_CONFIG => {
            let s = BmcConfigSpec::decode(b).ok()?;
            let c = s.config.unwrap_or_default();
            let ipmi = c.ipmi.map(|i| {
                json!({"address": i.address, "port": i.port, "username": i.username,
                       "password": secret(&i.password)})
            });
            let api = c.api.map(|a| json!({"address": a.address}));
            json!({"config": {"ipmi": ipmi, "api": api}})
        }
        TYPE_JOIN_CONFIG => {
            let s = ProviderJoinConfigSpec::decode(b).ok()?;
            let c = s.config.unwrap_or_default();
            json!({"config": {"kernel_args": c.kernel_args, "config": c.config},
                   "join_token": secret(&s.join_token)})
        }
        _ => return None,
    })
}

/// The JSON form of a resource.
pub fn resource(r: &Resource) -> Value {
    let md = r.metadata.clone().unwrap_or_default();
    let s = r.spec.clone().unwrap_or_default();
    let decoded = spec(&md.r#type, &s.proto_spec).unwrap_or_else(|| {
        json!({"proto_base64": base64::engine::general_purpose::STANDARD.encode(&s.proto_spec),
               "yaml": s.yaml_spec})
    });
    json!({"metadata": metadata(&md), "spec": decoded})
}
