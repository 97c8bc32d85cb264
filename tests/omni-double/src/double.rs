//! Putting a double together and serving it: the signed gRPC State service and the control
//! HTTP API, on listeners the caller chooses (port 0 works; the bound addresses are returned).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rackboot_proto::cosi::resource::state_server::StateServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::CompressionEncoding;

use crate::auth::{KeyError, KeyRing, RegisteredKey};
use crate::layer::AuthLayer;
use crate::names::is_dns_label;
use crate::omni::{OmniError, OmniHandle};
use crate::persist::{self, PersistError};
use crate::server::StateService;
use crate::shared::Shared;
use crate::store::Store;

/// Largest gRPC message accepted or sent (Omni's limit).
pub const MAX_MESSAGE: usize = 32 << 20;

/// How to build a double.
#[derive(Debug, Clone)]
pub struct DoubleConfig {
    /// The provider created with `omnictl infraprovider create <id>`.
    pub provider_id: String,
    /// Armored service-account public keys.
    pub public_keys: Vec<String>,
    /// Snapshot file of the persistent namespaces.
    pub state_file: Option<PathBuf>,
    /// Load the state file at start (otherwise start empty and leave it for `restore`).
    pub restore_on_start: bool,
    /// Events kept per (namespace, type).
    pub history_capacity: usize,
    /// Oldest events of the history no longer accepted as bookmarks.
    pub history_gap: usize,
}

impl DoubleConfig {
    /// Defaults: 1024 events of history, gap 16, no state file.
    pub fn new(provider_id: &str, public_keys: Vec<String>) -> Self {
        DoubleConfig {
            provider_id: provider_id.into(),
            public_keys,
            state_file: None,
            restore_on_start: false,
            history_capacity: 1024,
            history_gap: 16,
        }
    }
}

/// Why a double could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("provider id {0:?} is not a DNS-1123 label")]
    ProviderId(String),
    #[error("public key")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Omni(#[from] OmniError),
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A built double (not yet serving).
#[derive(Debug, Clone)]
pub struct Double {
    shared: Arc<Shared>,
    keys: Arc<RwLock<KeyRing>>,
    handle: OmniHandle,
}

impl Double {
    /// Builds the state: registers the keys, creates the InfraProvider and the resource
    /// definitions (unless restored from the state file).
    pub fn new(cfg: &DoubleConfig) -> Result<Self, StartError> {
        if !is_dns_label(&cfg.provider_id) {
            return Err(StartError::ProviderId(cfg.provider_id.clone()));
        }
        let mut ring = KeyRing::default();
        for k in &cfg.public_keys {
            ring.add(RegisteredKey::from_armored(k)?);
        }
        let cookie: [u8; 8] = rand::random();
        let store = Store::new(cfg.history_capacity, cfg.history_gap, cookie);
        let file_has_snapshot = cfg.state_file.as_ref().is_some_and(|f| f.exists());
        let shared = Arc::new(Shared::new(
            store,
            cfg.state_file.clone(),
            !file_has_snapshot,
        ));
        let keys = Arc::new(RwLock::new(ring));
        let handle = OmniHandle::new(shared.clone(), keys.clone(), cfg.provider_id.clone());
        if cfg.restore_on_start && file_has_snapshot {
            handle.restore()?;
        }
        if handle
            .get(
                crate::names::NS_INFRA_PROVIDER,
                crate::names::TYPE_INFRA_PROVIDER,
                &cfg.provider_id,
            )
            .is_err()
        {
            handle.create_infra_provider(&cfg.provider_id)?;
        }
        handle.ensure_resource_definitions()?;
        if let (Some(f), false) = (&cfg.state_file, file_has_snapshot) {
            persist::save(f, &shared.read(|s| s.snapshot(crate::shared::persistent)))?;
        }
        Ok(Double {
            shared,
            keys,
            handle,
        })
    }

    /// The Omni-side handle.
    pub fn handle(&self) -> OmniHandle {
        self.handle.clone()
    }

    /// Serves the signed State service on `listener` until `shutdown` resolves.
    pub async fn serve_grpc(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let svc = StateServer::new(StateService::new(self.shared.clone()))
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        tonic::transport::Server::builder()
            .layer(AuthLayer::new(self.keys.clone()))
            .add_service(svc)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await
    }

    /// Serves the control API on `listener` until `shutdown` resolves.
    pub async fn serve_control(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, crate::control::router(self.handle()))
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Binds both listeners and serves them in background tasks.
    pub async fn spawn(self, grpc: SocketAddr, control: SocketAddr) -> Result<Running, StartError> {
        let bind = |addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let gl = bind(grpc).await?;
        let cl = bind(control).await?;
        let grpc_addr = gl
            .local_addr()
            .map_err(|source| StartError::Bind { addr: grpc, source })?;
        let control_addr = cl.local_addr().map_err(|source| StartError::Bind {
            addr: control,
            source,
        })?;
        let (gtx, grx) = oneshot::channel::<()>();
        let (ctx, crx) = oneshot::channel::<()>();
        let d = self.clone();
        let g = tokio::spawn(async move {
            if let Err(e) = d.serve_grpc(gl, async { grx.await.unwrap_or(()) }).await {
                tracing::error!(error = %e, "gRPC server");
            }
        });
        let d = self.clone();
        let c = tokio::spawn(async move {
            if let Err(e) = d.serve_control(cl, async { crx.await.unwrap_or(()) }).await {
                tracing::error!(error = %e, "control server");
            }
        });
        Ok(Running {
            grpc_addr,
            control_addr,
            handle: self.handle(),
            stop: Some((gtx, ctx)),
            tasks: vec![g, c],
        })
    }
}

/// A serving double; dropping it stops both servers.
#[derive(Debug)]
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub control_addr: SocketAddr,
    pub handle: OmniHandle,
    stop: Option<(oneshot::Sender<()>, oneshot::Sender<()>)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops both servers and waits for them.
    pub async fn stop(mut self) {
        if let Some((g, c)) = self.stop.take() {
            let _ = g.send(());
            let _ = c.send(());
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
