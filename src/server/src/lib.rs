//! rackboot services. [`run`] opens the inventory, starts every enabled service on its listener
//! and runs until SIGINT/SIGTERM. Protocol decisions live in the sans-IO crates
//! (`rackboot-dhcp`, `rackboot-tftp`); this crate holds their thin async shells, the admin API
//! and the inventory commands.

pub mod admin;
pub mod api;
pub mod boot_http;
pub mod dhcp;
pub mod files;
pub mod inventory;
pub mod metrics;
pub mod net;
pub mod power;
pub mod tftp;
pub mod web;

use admin::{AdminState, AdminToken};
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
    let shared = Shared {
        config: Arc::new(config),
        inventory: Inventory::new(store, sealer),
        metrics: Arc::new(Metrics::new()),
    };
    Ok((shared, token))
}

/// Run every service until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let (shared, token) = open_shared(config)?;
    let cfg = shared.config.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut services = tokio::task::JoinSet::new();
    let files = Arc::new(files::BootFiles::new(cfg.assets_dir.join("tftp")));

    if let Some(addr) = cfg.tftp_listen {
        let socket = net::bind_udp(addr, cfg.interface.as_deref(), false).map_err(|source| {
            ServeError::Bind {
                what: "tftp",
                addr,
                source,
            }
        })?;
        let engine = rackboot_tftp::EngineConfig {
            max_blksize: cfg.tftp_max_blksize,
            max_windowsize: cfg.tftp_max_windowsize,
            ..Default::default()
        };
        let limits = tftp::TftpLimits {
            max_transfers: cfg.tftp_max_transfers,
            max_per_client: cfg.tftp_max_transfers_per_client,
        };
        let svc = tftp::TftpService::new(
            socket,
            files.clone(),
            engine,
            limits,
            cfg.tftp_single_port,
            shared.metrics.clone(),
        );
        tracing::info!(listen = %svc.local_addr().unwrap_or(addr), root = %files.root().display(), single_port = cfg.tftp_single_port, "tftp serving");
        services.spawn(svc.run(stop_rx.clone()));
    }

    let sightings =
        inventory::spawn_recorder(shared.inventory.clone(), std::time::Duration::from_secs(10));
    let (advertise, interface) = resolve_advertise(&cfg);
    if cfg.dhcp_mode == rackboot_config::DhcpMode::Proxy {
        match advertise {
            None => tracing::warn!(
                "ProxyDHCP not started: no address to advertise; set `interface` (--interface) or `advertise_addr` (--advertise-addr)"
            ),
            Some(ip) => {
                let svc = dhcp_service(&cfg, ip, interface.as_deref(), &shared, sightings.clone())?;
                tracing::info!(advertise = %ip, interface = interface.as_deref().unwrap_or("(all)"), port = cfg.dhcp_port, pxe_port = cfg.pxe_port, "proxydhcp serving");
                services.spawn(svc.run(stop_rx.clone()));
            }
        }
    }

    let http_addr = cfg.http_listen;
    let http_listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|source| ServeError::Bind {
            what: "boot http",
            addr: http_addr,
            source,
        })?;
    let http_local = http_listener.local_addr().unwrap_or(http_addr);
    let appliance_ip = advertise
        .map(std::net::IpAddr::V4)
        .unwrap_or(http_local.ip());
    let boot = boot_http::BootHttp {
        inventory: shared.inventory.clone(),
        metrics: shared.metrics.clone(),
        tftp_files: files.clone(),
        assets: Arc::new(files::BootFiles::new(cfg.assets_dir.clone())),
        sightings: sightings.clone(),
        appliance: std::net::SocketAddr::new(appliance_ip, http_local.port()).to_string(),
        agent: rackboot_ipxe::BootMode::Agent {
            kernel: cfg.agent_kernel.clone(),
            initrds: cfg.agent_initrds.clone(),
            cmdline: cfg.agent_cmdline.clone(),
        },
        init_rounds: cfg.init_rounds,
    };
    tracing::info!(listen = %http_local, appliance = %boot.appliance, assets = %cfg.assets_dir.display(), "boot http serving");
    let mut http_stop = stop_rx.clone();
    let http =
        axum::serve(http_listener, boot_http::router(boot)).with_graceful_shutdown(async move {
            let _ = http_stop.changed().await;
        });
    services.spawn(async move {
        if let Err(e) = http.await {
            tracing::error!(error = %e, "boot http server failed");
        }
    });

    let admin_addr = cfg.admin_listen;
    let listener = tokio::net::TcpListener::bind(admin_addr)
        .await
        .map_err(|source| ServeError::Bind {
            what: "admin",
            addr: admin_addr,
            source,
        })?;
    let power = Arc::new(power::PowerService::new(
        shared.inventory.clone(),
        power::PowerConfig {
            pacing: rackboot_bmc::PacingConfig {
                min_interval: std::time::Duration::from_millis(cfg.bmc_min_interval_ms),
                verify_timeout: std::time::Duration::from_secs(cfg.bmc_verify_timeout_secs),
                ..Default::default()
            },
            poll_interval: std::time::Duration::from_secs(cfg.bmc_poll_interval_secs.max(1)),
            max_parallel: cfg.bmc_max_parallel as usize,
        },
    ));
    if cfg.bmc_poll_interval_secs > 0 {
        services.spawn(power.clone().poll_loop(stop_rx.clone()));
    }
    let state = AdminState {
        power: power.clone(),
        inventory: shared.inventory.clone(),
        metrics: shared.metrics.clone(),
        token: token.clone(),
        loopback: admin_addr.ip().is_loopback(),
    };
    tracing::info!(
        admin = %listener.local_addr().unwrap_or(admin_addr),
        data_dir = %cfg.data_dir.display(),
        token_file = %token.path.display(),
        mode = ?cfg.mode,
        "rackboot serving"
    );
    let mut admin_stop = stop_rx.clone();
    let admin = axum::serve(listener, admin::router(state)).with_graceful_shutdown(async move {
        let _ = admin_stop.changed().await;
    });
    let admin = tokio::spawn(async move { admin.await });

    shutdown_signal().await;
    let _ = stop_tx.send(true);
    while services.join_next().await.is_some() {}
    match admin.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ServeError::Service("admin", e)),
        Err(e) => return Err(ServeError::Service("admin", std::io::Error::other(e))),
    }
    tracing::info!("rackboot stopped");
    Ok(())
}

/// The address put in replies and boot URLs, and the interface it lives on.
fn resolve_advertise(cfg: &Config) -> (Option<std::net::Ipv4Addr>, Option<String>) {
    use rackboot_config::AdvertiseAddr;
    match (cfg.advertise_addr, cfg.interface.clone()) {
        (AdvertiseAddr::Fixed(ip), Some(i)) => (Some(ip), Some(i)),
        (AdvertiseAddr::Fixed(ip), None) => (Some(ip), net::interface_of(ip)),
        (AdvertiseAddr::Auto, Some(i)) => (net::interface_ipv4(&i), Some(i)),
        (AdvertiseAddr::Auto, None) => match cfg.http_listen.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() => (Some(ip), net::interface_of(ip)),
            _ => (None, None),
        },
    }
}

fn dhcp_service(
    cfg: &Config,
    advertise: std::net::Ipv4Addr,
    interface: Option<&str>,
    shared: &Shared,
    sightings: tokio::sync::mpsc::Sender<inventory::Sighting>,
) -> Result<dhcp::DhcpService, ServeError> {
    let bind = |port: u16, what: &'static str| {
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
        net::bind_udp(addr, interface, true).map_err(|source| ServeError::Bind {
            what,
            addr,
            source,
        })
    };
    let mut pc = rackboot_dhcp::ProxyConfig::new(advertise, cfg.http_listen.port())
        .map_err(|e| ServeError::Config(format!("ProxyDHCP: {e}")))?
        .with_discovery_control(cfg.dhcp_discovery_control);
    for (arch, file) in &cfg.dhcp_boot_files {
        pc = pc
            .with_file_override(*arch, file.clone())
            .map_err(|e| ServeError::Config(format!("dhcp.boot_files.{arch}: {e}")))?;
    }
    Ok(dhcp::DhcpService {
        dhcp: bind(cfg.dhcp_port, "dhcp")?,
        pxe: bind(cfg.pxe_port, "pxe")?,
        config: pc,
        metrics: shared.metrics.clone(),
        sightings,
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}
