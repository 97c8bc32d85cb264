//! The `cosi.resource.State` gRPC service: Omni's provider access rules ([`crate::access`])
//! in front of the COSI store ([`crate::store`]), errors mapped to gRPC codes as COSI's
//! server maps them.

use std::sync::Arc;
use std::time::SystemTime;

use rackboot_proto::cosi::resource::state_server::State;
use rackboot_proto::cosi::resource::*;
use rackboot_proto::omni::specs::{BmcConfigSpec, InfraMachineSpec, ProviderJoinConfigSpec};
use tonic::{Request, Response, Status};

use crate::access::{self, AccessError, Grant};
use crate::auth::Caller;
use crate::names::*;
use crate::query::Filter;
use crate::shared::Shared;
use crate::store::{Store, StoreError};
use crate::watch::{self, WatchStream};

/// Maps a store refusal to the status COSI's gRPC server answers with.
pub fn store_status(e: StoreError) -> Status {
    let msg = e.to_string();
    match e {
        StoreError::NotFound(_) => Status::not_found(msg),
        StoreError::AlreadyExists(_) => Status::already_exists(msg),
        StoreError::VersionConflict { .. } | StoreError::PendingFinalizers { .. } => {
            Status::failed_precondition(msg)
        }
        StoreError::OwnerConflict { .. } => Status::permission_denied(msg),
        StoreError::PhaseConflict { .. } | StoreError::Invalid(_) => Status::invalid_argument(msg),
        StoreError::InvalidBookmark => Status::failed_precondition(msg),
    }
}

/// Why a call is refused, before it becomes a gRPC status at the edge.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("no verified signature")]
    Unauthenticated,
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not found")]
    Hidden,
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(String),
}

impl From<RpcError> for Status {
    fn from(e: RpcError) -> Status {
        match e {
            RpcError::Unauthenticated => Status::unauthenticated(e.to_string()),
            RpcError::Access(AccessError::PermissionDenied(m)) | RpcError::PermissionDenied(m) => {
                Status::permission_denied(m)
            }
            RpcError::Access(AccessError::InvalidArgument(m)) | RpcError::InvalidArgument(m) => {
                Status::invalid_argument(m)
            }
            RpcError::Store(e) => store_status(e),
            RpcError::Hidden => Status::not_found("not found"),
            RpcError::Unimplemented(m) => Status::unimplemented(m),
        }
    }
}

/// Maps a query the server cannot evaluate.
pub fn query_error(e: crate::query::QueryError) -> RpcError {
    match e {
        crate::query::QueryError::UnknownOp(_) => RpcError::Unimplemented(e.to_string()),
        crate::query::QueryError::Regexp(_) => RpcError::InvalidArgument(e.to_string()),
    }
}

fn has_label(r: &Resource, want: &str) -> bool {
    r.metadata
        .as_ref()
        .and_then(|m| m.labels.get(LABEL_PROVIDER_ID))
        .is_some_and(|v| v == want)
}

/// Whether `new` differs from `old` only in version and finalizers (Omni's
/// `resourcesAreEqual`): metadata compared field by field, specs compared decoded.
fn only_finalizers_differ(old: &Resource, new: &Resource) -> bool {
    let strip = |r: &Resource| {
        let mut m = r.metadata.clone().unwrap_or_default();
        m.version = String::new();
        m.finalizers.clear();
        m.created = None;
        m.updated = None;
        m
    };
    if strip(old) != strip(new) {
        return false;
    }
    let ty = old
        .metadata
        .as_ref()
        .map(|m| m.r#type.as_str())
        .unwrap_or("");
    let a = old
        .spec
        .as_ref()
        .map(|s| s.proto_spec.as_slice())
        .unwrap_or(&[]);
    let b = new
        .spec
        .as_ref()
        .map(|s| s.proto_spec.as_slice())
        .unwrap_or(&[]);
    fn same<M: prost::Message + Default + PartialEq>(a: &[u8], b: &[u8]) -> bool {
        matches!((M::decode(a), M::decode(b)), (Ok(x), Ok(y)) if x == y)
    }
    match ty {
        TYPE_INFRA_MACHINE => same::<InfraMachineSpec>(a, b),
        TYPE_BMC_CONFIG => same::<BmcConfigSpec>(a, b),
        TYPE_JOIN_CONFIG => same::<ProviderJoinConfigSpec>(a, b),
        _ => a == b,
    }
}

/// The service.
#[derive(Debug, Clone)]
pub struct StateService {
    shared: Arc<Shared>,
}

impl StateService {
    /// A service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        StateService { shared }
    }

    fn grant<T>(
        &self,
        req: &Request<T>,
        ns: &str,
        ty: &str,
        write: bool,
    ) -> Result<Grant, RpcError> {
        let caller = req
            .extensions()
            .get::<Caller>()
            .ok_or(RpcError::Unauthenticated)?;
        let registered = self
            .shared
            .read(|s| provider_registered(s, &caller.provider_id));
        Ok(access::check(
            &caller.provider_id,
            registered,
            ns,
            ty,
            write,
        )?)
    }

    /// Fetches a resource for a write, hiding other providers' resources.
    fn current(&self, g: &Grant, ns: &str, ty: &str, id: &str) -> Result<Resource, RpcError> {
        let r = self.shared.read(|s| s.get(ns, ty, id))?;
        match &g.label {
            Some(want) if !has_label(&r, want) => Err(RpcError::Hidden),
            _ => Ok(r),
        }
    }
}

/// Whether the InfraProvider `id` exists (created by an Omni admin).
pub fn provider_registered(store: &Store, id: &str) -> bool {
    store
        .get(NS_INFRA_PROVIDER, TYPE_INFRA_PROVIDER, id)
        .is_ok()
}

fn meta(r: &Option<Resource>) -> Result<(Resource, Metadata), RpcError> {
    let r = r
        .clone()
        .ok_or_else(|| RpcError::InvalidArgument("resource missing".into()))?;
    let m = r
        .metadata
        .clone()
        .ok_or_else(|| RpcError::InvalidArgument("metadata missing".into()))?;
    Ok((r, m))
}

type ListStream = tokio_stream::Iter<std::vec::IntoIter<Result<ListResponse, Status>>>;

type Rpc<T> = Result<Response<T>, RpcError>;

impl StateService {
    async fn do_get(&self, req: Request<GetRequest>) -> Rpc<GetResponse> {
        let r = req.get_ref();
        let g = self.grant(&req, &r.namespace, &r.r#type, false)?;
        let res = self.current(&g, &r.namespace, &r.r#type, &r.id)?;
        Ok(Response::new(GetResponse {
            resource: Some(res),
        }))
    }

    async fn do_list(&self, req: Request<ListRequest>) -> Rpc<ListStream> {
        let r = req.get_ref();
        let g = self.grant(&req, &r.namespace, &r.r#type, false)?;
        let opts = r.options.clone().unwrap_or_default();
        let filter = Filter::new(&opts.label_query, opts.id_query.as_ref()).map_err(query_error)?;
        let items = self
            .shared
            .read(|s| s.list(&r.namespace, &r.r#type, &filter));
        let items: Vec<Result<ListResponse, Status>> = items
            .into_iter()
            .filter(|res| g.label.as_ref().is_none_or(|want| has_label(res, want)))
            .map(|res| ListResponse {
                resource: Some(res),
            })
            .map(Ok)
            .collect();
        Ok(Response::new(tokio_stream::iter(items)))
    }

    async fn do_create(&self, req: Request<CreateRequest>) -> Rpc<CreateResponse> {
        let (mut res, md) = meta(&req.get_ref().resource)?;
        let g = self.grant(&req, &md.namespace, &md.r#type, true)?;
        if g.read_only {
            return Err(RpcError::PermissionDenied(format!(
                "infra providers are not allowed to create {:?} resources",
                md.r#type
            )));
        }
        if let Some(id) = &g.label {
            if g.check_id && &md.id != id {
                return Err(RpcError::InvalidArgument(format!(
                    "resource ID must match the infra provider ID {id:?}"
                )));
            }
            if let Some(m) = res.metadata.as_mut() {
                m.labels.insert(LABEL_PROVIDER_ID.into(), id.clone());
            }
        }
        let owner = req.get_ref().options.clone().unwrap_or_default().owner;
        let stored = self
            .shared
            .write(|s| s.create(res, &owner, SystemTime::now()))?;
        Ok(Response::new(CreateResponse {
            resource: Some(stored),
        }))
    }

    async fn do_update(&self, req: Request<UpdateRequest>) -> Rpc<UpdateResponse> {
        let (mut res, md) = meta(&req.get_ref().new_resource)?;
        let g = self.grant(&req, &md.namespace, &md.r#type, true)?;
        let old = self
            .shared
            .read(|s| s.get(&md.namespace, &md.r#type, &md.id))?;
        if g.read_only && !only_finalizers_differ(&old, &res) {
            return Err(RpcError::PermissionDenied(format!(
                "infra providers are not allowed to update {:?} resources other than setting finalizers",
                md.r#type
            )));
        }
        if let Some(want) = &g.label {
            if !has_label(&old, want) {
                return Err(RpcError::Hidden);
            }
            if let Some(m) = res.metadata.as_mut() {
                m.labels.insert(LABEL_PROVIDER_ID.into(), want.clone());
            }
        }
        let opts = req.get_ref().options.clone().unwrap_or_default();
        let stored = self.shared.write(|s| {
            s.update(
                res,
                &opts.owner,
                opts.expected_phase.as_deref(),
                SystemTime::now(),
            )
        })?;
        Ok(Response::new(UpdateResponse {
            resource: Some(stored),
        }))
    }

    async fn do_destroy(&self, req: Request<DestroyRequest>) -> Rpc<DestroyResponse> {
        let r = req.get_ref().clone();
        let g = self.grant(&req, &r.namespace, &r.r#type, true)?;
        self.shared
            .read(|s| s.get(&r.namespace, &r.r#type, &r.id))?;
        if g.read_only {
            return Err(RpcError::PermissionDenied(format!(
                "infra providers are not allowed to destroy {:?} resources",
                r.r#type
            )));
        }
        self.current(&g, &r.namespace, &r.r#type, &r.id)?;
        let owner = r.options.unwrap_or_default().owner;
        self.shared
            .write(|s| s.destroy(&r.namespace, &r.r#type, &r.id, &owner))?;
        Ok(Response::new(DestroyResponse {}))
    }

    async fn do_watch(&self, req: Request<WatchRequest>) -> Rpc<WatchStream> {
        let g = self.grant(&req, &req.get_ref().namespace, &req.get_ref().r#type, false)?;
        let stream = watch::start(self.shared.clone(), req.into_inner(), g.label)?;
        Ok(Response::new(stream))
    }

    async fn do_teardown(&self, req: Request<TeardownRequest>) -> Rpc<TeardownResponse> {
        let r = req.get_ref().clone();
        let g = self.grant(&req, &r.namespace, &r.r#type, true)?;
        let cur = self.current(&g, &r.namespace, &r.r#type, &r.id)?;
        let running = cur
            .metadata
            .as_ref()
            .is_some_and(|m| m.phase == PHASE_RUNNING);
        if g.read_only && running {
            return Err(RpcError::PermissionDenied(format!(
                "infra providers are not allowed to update {:?} resources other than setting finalizers",
                r.r#type
            )));
        }
        let owner = r.options.unwrap_or_default().owner;
        let ready = self
            .shared
            .write(|s| s.teardown(&r.namespace, &r.r#type, &r.id, &owner, SystemTime::now()))?;
        Ok(Response::new(TeardownResponse {
            destroy_ready: ready,
        }))
    }
}

#[tonic::async_trait]
impl State for StateService {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        self.do_get(req).await.map_err(Status::from)
    }

    type ListStream = ListStream;

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ListStream>, Status> {
        self.do_list(req).await.map_err(Status::from)
    }

    async fn create(
        &self,
        req: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        self.do_create(req).await.map_err(Status::from)
    }

    async fn update(
        &self,
        req: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        self.do_update(req).await.map_err(Status::from)
    }

    async fn destroy(
        &self,
        req: Request<DestroyRequest>,
    ) -> Result<Response<DestroyResponse>, Status> {
        self.do_destroy(req).await.map_err(Status::from)
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        self.do_watch(req).await.map_err(Status::from)
    }

    async fn teardown(
        &self,
        req: Request<TeardownRequest>,
    ) -> Result<Response<TeardownResponse>, Status> {
        self.do_teardown(req).await.map_err(Status::from)
    }
}

/// Encodes a spec message into a COSI `Spec` (the YAML rendering is left empty: display only).
pub fn spec_of<M: prost::Message>(m: &M) -> Spec {
    Spec {
        proto_spec: m.encode_to_vec(),
        yaml_spec: String::new(),
    }
}
