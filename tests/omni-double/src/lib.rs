//! A strict test double of Omni's API for a static infrastructure provider: the
//! `cosi.resource.State` gRPC service over an in-memory COSI state, behind Omni's signed-request
//! verification and Omni's per-provider access rules, plus Omni's side of the story (machines
//! joining, acceptance, allocation, wipe and reboot requests, …) driven by tests through
//! [`OmniHandle`] or the HTTP control API ([`control`]). `omni-double serve` runs it as a
//! process; `omni-double keygen` makes service-account keys as Omni issues them.
//!
//! # Faithful (taken from COSI's `inmem` state and gRPC server, Omni's `infraprovider.State`
//! and go-api-signature)
//! - Versions: decimal, 1 on create, +1 on every update; Update needs the stored version
//!   (`FailedPrecondition`) and the stored owner (`PermissionDenied`, checked first); an
//!   `expected_phase` mismatch is `InvalidArgument`; Create on an existing id `AlreadyExists`;
//!   Destroy with finalizers `FailedPrecondition`; Teardown sets `tearingDown` and answers
//!   whether no finalizers are left. Update stores the metadata as sent (labels, finalizers,
//!   phase, owner field) with the new version, `updated` = now and the stored `created`.
//! - List: sorted by id; label queries with EXISTS/EQUAL/IN/LT/LTE/LT_NUMERIC/LTE_NUMERIC,
//!   invert, NOT_EXISTS as inverted EXISTS, terms AND-ed, queries OR-ed; RE2 id regexp.
//! - Watch ([`watch`]): empty ready marker; bootstrap CREATED (sorted, no bookmark) then
//!   BOOTSTRAPPED with a bookmark (api_version ≥ 1); live events with `old` and a bookmark;
//!   label-query transitions turn UPDATED into CREATED/DESTROYED; bookmarks are an 8-byte
//!   per-run cookie + position, so a restarted double refuses old ones; bookmarks outside the
//!   kept history (capacity − gap) are `FailedPrecondition`; overrun → ERRORED and end;
//!   single-resource watches start with CREATED or a DESTROYED tombstone.
//! - Access ([`access`]): namespaces `infra-provider`, `infra-provider-ephemeral` (not
//!   persisted), `infra-provider:<id>` (own types only, `InvalidArgument` otherwise; other
//!   providers' `PermissionDenied`), `meta` (ResourceDefinitions, read-only); the provider-id
//!   label set on create and every read filtered by it (others' resources are `NotFound`);
//!   InfraMachines/BMCConfigs/ProviderJoinConfigs read-only except finalizer-only updates;
//!   status ids must be the provider id; a provider without an InfraProvider resource is
//!   `PermissionDenied`.
//! - Signatures ([`auth`], [`layer`]): the `siderov1` scheme checked against the real HTTP/2
//!   path, timestamp ±5 min, the ten payload headers compared with the metadata (`null` vs
//!   absent, empty arrays never match, `fieldSelectors` only as `null`), fingerprint lookup,
//!   identity, key expiry, signing capability, binary detached signature over the exact bytes.
//!   Every failure is `Unauthenticated`. Keys ([`keygen`]) are Ed25519 (EdDSA legacy)
//!   primary + Curve25519 ECDH subkey, user id `<id>@infra-provider.serviceaccount.omni.
//!   sidero.dev`, with a key expiration time; GnuPG reads them.
//!
//! # Simplified
//! - One provider identity kind only (no users, roles other than InfraProvider, or JWTs);
//!   keys come from start-up files or [`OmniHandle::add_key`], not from Omni's PublicKey
//!   resources. Both `infra-provider:<id>` and the e-mail form are accepted as the name.
//! - Omni's controllers are not run: tests call [`OmniHandle`] for what they would do.
//!   `install_event_id` moves only on [`OmniHandle::mark_installed`] (or `allocate` with
//!   `installed: true`), since Omni bumps it when Talos reports the install, not at allocation.
//!   InfraMachines are owned by `InfraMachineController`, ProviderJoinConfigs by
//!   `ProviderJoinConfigController`, BMCConfigs and InfraProviders by the empty (user) owner.
//! - `yaml_spec` is left empty on resources the double writes; ResourceDefinitions carry only
//!   a small YAML spec. Omni's resource validation (spec contents) is not applied.
//! - The history is a fixed-size ring (default 1024 events, gap 16) per (namespace, type)
//!   instead of COSI's growing buffer; `TeardownAndDestroy` is not served (Unimplemented).
//! - Persistence is a JSON snapshot file ([`persist`]) rewritten after each change, with
//!   explicit wipe/restore so tests can simulate an Omni restart.
#![forbid(unsafe_code)]

pub mod access;
pub mod auth;
pub mod control;
pub mod double;
pub mod json;
pub mod keygen;
pub mod layer;
pub mod names;
pub mod omni;
pub mod persist;
pub mod query;
pub mod server;
pub mod shared;
pub mod store;
pub mod watch;

pub use double::{Double, DoubleConfig, Running};
pub use omni::OmniHandle;
