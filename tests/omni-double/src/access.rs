//! What a provider's service account may do, as Omni's `infraprovider.State` decides it.
//!
//! - The caller's provider id must name an existing InfraProvider (`omnictl infraprovider
//!   create <id>`), else `PermissionDenied`.
//! - `meta`: ResourceDefinitions are readable, nothing is writable.
//! - `infra-provider:<own id>`: any type ending in `.<own id>.infraprovider.sidero.dev`
//!   (else `InvalidArgument`), full access, no label filtering. Another provider's private
//!   namespace, or any other namespace: `PermissionDenied`.
//! - The shared namespaces `infra-provider` and `infra-provider-ephemeral`: only the types
//!   below (else `PermissionDenied`); every read is filtered by the label
//!   `omni.sidero.dev/infra-provider-id=<own id>` (others' resources are `NotFound`), and a
//!   create sets it.
//!
//! | type | provider may |
//! |---|---|
//! | InfraProviderStatuses, InfraProviderHealthStatuses | read/write, id must be the provider id |
//! | InfraMachineStatuses | read/write |
//! | InfraMachines, BMCConfigs, ProviderJoinConfigs | read; Update only if nothing but finalizers (and the version) differ |

use crate::names::*;

/// Refusal of an access check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
}

/// What the rules say about one (namespace, type) for this caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Label value reads are filtered by and creates get (shared namespaces only).
    pub label: Option<String>,
    /// Finalizer-only updates, no create or destroy.
    pub read_only: bool,
    /// The resource id must be the provider id.
    pub check_id: bool,
}

#[derive(Clone, Copy)]
struct TypeRule {
    read_only: bool,
    check_id: bool,
}

fn shared_type_rule(ty: &str) -> Option<TypeRule> {
    let rule = |read_only, check_id| {
        Some(TypeRule {
            read_only,
            check_id,
        })
    };
    match ty {
        TYPE_INFRA_MACHINE | TYPE_BMC_CONFIG | TYPE_JOIN_CONFIG => rule(true, false),
        TYPE_INFRA_MACHINE_STATUS => rule(false, false),
        TYPE_PROVIDER_STATUS | TYPE_PROVIDER_HEALTH => rule(false, true),
        _ => None,
    }
}

/// Checks access by provider `caller_id` (whose InfraProvider exists iff `registered`).
pub fn check(
    caller_id: &str,
    registered: bool,
    ns: &str,
    ty: &str,
    write: bool,
) -> Result<Grant, AccessError> {
    if !registered {
        return Err(AccessError::PermissionDenied(format!(
            "infra provider {caller_id:?} is not registered in Omni"
        )));
    }
    if ns == NS_META {
        return if ty == TYPE_RESOURCE_DEFINITION && !write {
            Ok(Grant {
                label: None,
                read_only: true,
                check_id: false,
            })
        } else {
            Err(AccessError::PermissionDenied(format!(
                "infra providers may not {} {ty:?} resources",
                if write { "modify" } else { "read" }
            )))
        };
    }
    let own = private_namespace(caller_id);
    let rule = if ns.starts_with(NS_PROVIDER_PRIVATE_PREFIX) {
        TypeRule {
            read_only: false,
            check_id: false,
        }
    } else {
        shared_type_rule(ty).ok_or_else(|| {
            AccessError::PermissionDenied(format!(
                "internal error: resource {ty:?} is not an infra provider managed resource"
            ))
        })?
    };
    let label = if ns == NS_INFRA_PROVIDER || ns == NS_INFRA_PROVIDER_EPHEMERAL {
        Some(caller_id.to_string())
    } else if ns == own {
        let suffix = format!(".{caller_id}{PROVIDER_TYPE_SUFFIX}");
        if !ty.ends_with(&suffix) {
            return Err(AccessError::InvalidArgument(format!(
                "resources in namespace {ns:?} must have a type suffix {suffix:?}"
            )));
        }
        None
    } else {
        return Err(AccessError::PermissionDenied(format!(
            "namespace not allowed, must be one of: {NS_INFRA_PROVIDER}, {NS_INFRA_PROVIDER_EPHEMERAL}, {own}"
        )));
    };
    Ok(Grant {
        label,
        read_only: rule.read_only,
        check_id: rule.check_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = |ns: &str, ty: &str, w| check("p1", true, ns, ty, w);
        assert_eq!(
            ok(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, false).map(|g| (g.label, g.read_only)),
            Ok((Some("p1".into()), true))
        );
        assert!(ok(NS_INFRA_PROVIDER, TYPE_PROVIDER_STATUS, true).is_ok_and(|g| g.check_id));
        assert!(ok(
            "infra-provider:p1",
            "Foos.p1.infraprovider.sidero.dev",
            true
        )
        .is_ok_and(|g| g.label.is_none()));
        assert!(matches!(
            ok(
                "infra-provider:p1",
                "Foos.p2.infraprovider.sidero.dev",
                true
            ),
            Err(AccessError::InvalidArgument(_))
        ));
        assert!(matches!(
            ok(
                "infra-provider:p2",
                "Foos.p2.infraprovider.sidero.dev",
                false
            ),
            Err(AccessError::PermissionDenied(_))
        ));
        assert!(matches!(
            ok("default", TYPE_INFRA_MACHINE, false),
            Err(AccessError::PermissionDenied(_))
        ));
        assert!(matches!(
            ok(NS_INFRA_PROVIDER, "Clusters.omni.sidero.dev", false),
            Err(AccessError::PermissionDenied(_))
        ));
        assert!(ok(NS_META, TYPE_RESOURCE_DEFINITION, false).is_ok());
        assert!(ok(NS_META, TYPE_RESOURCE_DEFINITION, true).is_err());
        assert!(check("p1", false, NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, false).is_err());
    }
}
