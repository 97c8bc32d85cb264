//! Namespaces, resource types and labels exactly as Omni spells them (omni-wire.md §3).

/// Shared, persistent namespace of the infra-provider resources.
pub const NS_INFRA_PROVIDER: &str = "infra-provider";
/// Shared namespace whose contents Omni does not persist.
pub const NS_INFRA_PROVIDER_EPHEMERAL: &str = "infra-provider-ephemeral";
/// Prefix of a provider-private namespace (`infra-provider:<id>`).
pub const NS_PROVIDER_PRIVATE_PREFIX: &str = "infra-provider:";
/// COSI meta namespace (resource definitions).
pub const NS_META: &str = "meta";

/// Suffix every type in a provider-private namespace ends with, after `.<id>`.
pub const PROVIDER_TYPE_SUFFIX: &str = ".infraprovider.sidero.dev";

pub const TYPE_INFRA_PROVIDER: &str = "InfraProviders.omni.sidero.dev";
pub const TYPE_PROVIDER_STATUS: &str = "InfraProviderStatuses.omni.sidero.dev";
pub const TYPE_PROVIDER_HEALTH: &str = "InfraProviderHealthStatuses.omni.sidero.dev";
pub const TYPE_INFRA_MACHINE: &str = "InfraMachines.omni.sidero.dev";
pub const TYPE_INFRA_MACHINE_STATUS: &str = "InfraMachineStatuses.omni.sidero.dev";
pub const TYPE_BMC_CONFIG: &str = "BMCConfigs.omni.sidero.dev";
pub const TYPE_JOIN_CONFIG: &str = "ProviderJoinConfigs.omni.sidero.dev";
pub const TYPE_RESOURCE_DEFINITION: &str = "ResourceDefinitions.meta.cosi.dev";

/// Set by Omni on every resource a provider creates in a shared namespace.
pub const LABEL_PROVIDER_ID: &str = "omni.sidero.dev/infra-provider-id";
pub const LABEL_STATIC_PROVIDER: &str = "omni.sidero.dev/is-static-infra-provider";
pub const LABEL_ACCEPT_PENDING: &str = "omni.sidero.dev/accept-pending";
pub const LABEL_CLUSTER: &str = "omni.sidero.dev/cluster";
pub const LABEL_MACHINE_SET: &str = "omni.sidero.dev/machine-set";
pub const LABEL_ROLE_CONTROLPLANE: &str = "omni.sidero.dev/role-controlplane";
pub const LABEL_ROLE_WORKER: &str = "omni.sidero.dev/role-worker";

/// Owner Omni's own controllers write with (the provider never sees it as its own).
pub const OMNI_OWNER: &str = "";

/// COSI phases.
pub const PHASE_RUNNING: &str = "running";
pub const PHASE_TEARING_DOWN: &str = "tearingDown";

/// Service-account identity of a provider: `infra-provider:<id>` (the key JSON `name`).
pub fn provider_identity(id: &str) -> String {
    format!("{NS_PROVIDER_PRIVATE_PREFIX}{id}")
}

/// The e-mail form of that identity, as Omni stores it and as the key's user id carries it.
pub fn provider_email(id: &str) -> String {
    format!("{id}@infra-provider.serviceaccount.omni.sidero.dev")
}

/// The provider-private namespace of `id`.
pub fn private_namespace(id: &str) -> String {
    format!("{NS_PROVIDER_PRIVATE_PREFIX}{id}")
}

/// Types the double knows how to decode to JSON, and for which it serves a ResourceDefinition.
pub const KNOWN_TYPES: &[&str] = &[
    TYPE_INFRA_PROVIDER,
    TYPE_PROVIDER_STATUS,
    TYPE_PROVIDER_HEALTH,
    TYPE_INFRA_MACHINE,
    TYPE_INFRA_MACHINE_STATUS,
    TYPE_BMC_CONFIG,
    TYPE_JOIN_CONFIG,
];

/// Whether `id` is a DNS-1123 label (what Omni requires of a provider id).
pub fn is_dns_label(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// Owner of the InfraMachines Omni's controller writes (a provider must pass it to update).
pub const OWNER_INFRA_MACHINE: &str = "InfraMachineController";
/// Owner of the ProviderJoinConfig Omni's controller writes.
pub const OWNER_JOIN_CONFIG: &str = "ProviderJoinConfigController";
/// Owner of user-managed resources (BMCConfigs, InfraProviders).
pub const OWNER_USER: &str = "";
