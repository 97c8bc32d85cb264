//! A typed, signed client of Omni's COSI state service (omni-wire.md §2–3).

use std::sync::Arc;

use prost::Message;
use rackboot_proto::cosi::resource::{
    self as cosi, state_client::StateClient, CreateOptions, CreateRequest, GetRequest, Metadata,
    Resource, Spec, UpdateOptions, UpdateRequest, WatchOptions, WatchRequest, WatchResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::auth::{ServiceAccountKey, Signer};

pub const NS: &str = "infra-provider";
pub const NS_EPHEMERAL: &str = "infra-provider-ephemeral";
pub const LABEL_PROVIDER_ID: &str = "omni.sidero.dev/infra-provider-id";
pub const LABEL_STATIC_PROVIDER: &str = "omni.sidero.dev/is-static-infra-provider";

/// Resource types.
pub mod types {
    pub const PROVIDER_STATUS: &str = "InfraProviderStatuses.omni.sidero.dev";
    pub const PROVIDER_HEALTH: &str = "InfraProviderHealthStatuses.omni.sidero.dev";
    pub const INFRA_MACHINE: &str = "InfraMachines.omni.sidero.dev";
    pub const INFRA_MACHINE_STATUS: &str = "InfraMachineStatuses.omni.sidero.dev";
    pub const BMC_CONFIG: &str = "BMCConfigs.omni.sidero.dev";
    pub const JOIN_CONFIG: &str = "ProviderJoinConfigs.omni.sidero.dev";
}

/// Omni's limit for one message.
const MAX_MESSAGE: usize = 32 * 1024 * 1024;

#[derive(Clone)]
pub struct OmniClient {
    inner: StateClient<InterceptedService<Channel, Signer>>,
}

impl OmniClient {
    pub fn new(channel: Channel, key: Arc<ServiceAccountKey>) -> Self {
        let inner = StateClient::with_interceptor(channel, Signer::new(key))
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Self { inner }
    }

    pub async fn get(&mut self, ns: &str, ty: &str, id: &str) -> Result<Option<Resource>, Status> {
        let req = GetRequest {
            namespace: ns.into(),
            r#type: ty.into(),
            id: id.into(),
            options: Some(Default::default()),
        };
        match self.inner.get(req).await {
            Ok(r) => Ok(r.into_inner().resource),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// Create the resource, or update its spec (and labels) if it exists; retries version
    /// conflicts a few times. Owner is empty (provider-written resources are not
    /// controller-owned).
    pub async fn put<M: Message>(
        &mut self,
        ns: &str,
        ty: &str,
        id: &str,
        spec: &M,
        labels: &[(&str, &str)],
    ) -> Result<Resource, Status> {
        let bytes = spec.encode_to_vec();
        for _ in 0..4 {
            match self.get(ns, ty, id).await? {
                None => {
                    let md = Metadata {
                        namespace: ns.into(),
                        r#type: ty.into(),
                        id: id.into(),
                        version: "undefined".into(),
                        phase: "running".into(),
                        labels: labels
                            .iter()
                            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                            .collect(),
                        ..Default::default()
                    };
                    let req = CreateRequest {
                        resource: Some(resource(md, &bytes)),
                        options: Some(CreateOptions::default()),
                    };
                    match self.inner.create(req).await {
                        Ok(r) => return r.into_inner().resource.ok_or_else(missing),
                        Err(s) if s.code() == Code::AlreadyExists => continue,
                        Err(s) => return Err(s),
                    }
                }
                Some(existing) => {
                    let mut md = existing.metadata.unwrap_or_default();
                    if existing.spec.as_ref().map(|s| s.proto_spec.as_slice()) == Some(&bytes[..])
                        && labels
                            .iter()
                            .all(|(k, v)| md.labels.get(*k).map(String::as_str) == Some(*v))
                    {
                        return Ok(Resource {
                            metadata: Some(md),
                            spec: existing.spec,
                        });
                    }
                    for (k, v) in labels {
                        md.labels.insert((*k).to_string(), (*v).to_string());
                    }
                    let owner = md.owner.clone();
                    let req = UpdateRequest {
                        new_resource: Some(resource(md, &bytes)),
                        options: Some(UpdateOptions {
                            owner,
                            expected_phase: None,
                        }),
                    };
                    match self.inner.update(req).await {
                        Ok(r) => return r.into_inner().resource.ok_or_else(missing),
                        Err(s) if s.code() == Code::FailedPrecondition => continue,
                        Err(s) => return Err(s),
                    }
                }
            }
        }
        Err(Status::aborted(format!(
            "{ty}/{id}: kept changing while being written"
        )))
    }

    /// Add (`add = true`) or remove our finalizer on a resource we may only annotate that way.
    pub async fn set_finalizer(
        &mut self,
        ns: &str,
        ty: &str,
        id: &str,
        finalizer: &str,
        add: bool,
    ) -> Result<(), Status> {
        for _ in 0..4 {
            let Some(r) = self.get(ns, ty, id).await? else {
                return Ok(());
            };
            let mut md = r.metadata.unwrap_or_default();
            let has = md.finalizers.iter().any(|f| f == finalizer);
            if has == add {
                return Ok(());
            }
            if add {
                md.finalizers.push(finalizer.to_string());
            } else {
                md.finalizers.retain(|f| f != finalizer);
            }
            let owner = md.owner.clone();
            let req = UpdateRequest {
                new_resource: Some(Resource {
                    metadata: Some(md),
                    spec: r.spec,
                }),
                options: Some(UpdateOptions {
                    owner,
                    expected_phase: None,
                }),
            };
            match self.inner.update(req).await {
                Ok(_) => return Ok(()),
                Err(s) if s.code() == Code::FailedPrecondition => continue,
                Err(s) => return Err(s),
            }
        }
        Err(Status::aborted(format!("{ty}/{id}: kept changing")))
    }

    /// Watch a whole kind: bootstrap contents (CREATED…, BOOTSTRAPPED), or resume after a bookmark.
    pub async fn watch_kind(
        &mut self,
        ns: &str,
        ty: &str,
        bookmark: Option<Vec<u8>>,
    ) -> Result<Streaming<WatchResponse>, Status> {
        let req = WatchRequest {
            namespace: ns.into(),
            r#type: ty.into(),
            id: None,
            options: Some(WatchOptions {
                bootstrap_contents: bookmark.is_none(),
                start_from_bookmark: bookmark,
                ..Default::default()
            }),
            api_version: 1,
        };
        Ok(self.inner.watch(req).await?.into_inner())
    }
}

fn missing() -> Status {
    Status::internal("Omni answered without the resource")
}

fn resource(md: Metadata, spec: &[u8]) -> Resource {
    Resource {
        metadata: Some(md),
        spec: Some(Spec {
            proto_spec: spec.to_vec(),
            yaml_spec: String::new(),
        }),
    }
}

/// Decode a resource's spec as `M`.
pub fn spec_of<M: Message + Default>(r: &Resource) -> Result<M, prost::DecodeError> {
    M::decode(
        r.spec
            .as_ref()
            .map(|s| s.proto_spec.as_slice())
            .unwrap_or_default(),
    )
}

/// The resource id, or "" if the metadata is missing.
pub fn id_of(r: &Resource) -> &str {
    r.metadata
        .as_ref()
        .map(|m| m.id.as_str())
        .unwrap_or_default()
}

pub use cosi::EventType;

impl OmniClient {
    /// Destroy a resource we wrote (NotFound is success).
    pub async fn destroy(&mut self, ns: &str, ty: &str, id: &str) -> Result<(), Status> {
        let req = cosi::DestroyRequest {
            namespace: ns.into(),
            r#type: ty.into(),
            id: id.into(),
            options: Some(cosi::DestroyOptions::default()),
        };
        match self.inner.destroy(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(s),
        }
    }
}
