//! rackboot services. [`run`] opens the inventory, starts every enabled service on its listener
//! and runs until SIGINT/SIGTERM. Protocol decisions live in the sans-IO crates
//! (`rackboot-dhcp`, `rackboot-tftp`); this crate holds their thin async shells, the admin API
//! and the inventory commands.

pub mod admin;
pub mod agent_link;
pub mod agent_token;
pub mod api;
pub mod asset_cache;
pub mod boot_http;
pub mod dhcp;
pub mod fd_limit;
pub mod files;
pub mod inventory;
pub mod lifecycle;
pub mod metal_agent;
pub mod metrics;
pub mod net;
pub mod omni_link;
pub mod power;
mod serve;
#[cfg(test)]
mod test_support;
pub mod tftp;
mod tftp_icmp;
mod tftp_send;
pub mod web;

use admin::AdminToken;
use inventory::Inventory;
use metrics::Metrics;
use rackboot_config::Config;
use rackboot_store::{Sealer, SledStore, Store};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create data directory {0}")]
    DataDir(PathBuf, #[source] std::io::Error),
    #[error("cannot open the inventory store")]
    Store(#[from] rackboot_store::StoreError),
    #[error("cannot load the secret key")]
    Seal(#[from] rackboot_store::SealError),
    #[error("cannot load the admin token")]
    Token(#[from] admin::auth_error::TokenError),
    #[error("cannot listen on {what} {addr}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0} server failed")]
    Service(&'static str, #[source] std::io::Error),
}

/// Everything the services share.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub inventory: Inventory,
    pub metrics: Arc<Metrics>,
}

/// Open the inventory in the data dir (creating it, mode 0700).
pub fn open_shared(config: Config) -> Result<(Shared, Arc<AdminToken>), ServeError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = &config.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ServeError::DataDir(dir.clone(), e))?;
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.join("inventory"))?);
    let sealer = Arc::new(Sealer::open_or_create(&dir.join("secret.key"))?);
    let token = Arc::new(AdminToken::load(config.admin_token_file.as_deref(), dir)?);
    let inventory = Inventory::new(store, sealer)
        .with_discovery_limit(config.discovery_burst, config.discovery_per_second);
    let shared = Shared {
        config: Arc::new(config),
        inventory,
        metrics: Arc::new(Metrics::new()),
    };
    Ok((shared, token))
}

pub use serve::run;
