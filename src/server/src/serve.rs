//! `rackboot serve`: start every enabled service on its listener, run until SIGINT/SIGTERM,
//! then stop them all (each service watches the shutdown channel).

use crate::admin::{self, AdminState, AdminToken};
use crate::{boot_http, dhcp, files, inventory, lifecycle, net, power, tftp, ServeError, Shared};
use rackboot_config::Config;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

type Services = JoinSet<()>;

/// Run every service until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), ServeError> {
    if config.mode == rackboot_config::Mode::Omni {
        // Refuse a missing, malformed, expired or non-signing key before serving anything.
        crate::omni_link::load_key(&config)?;
    }
    let (shared, token) = crate::open_shared(config)?;
    let cfg = shared.config.clone();
    let (stop_tx, stop) = watch::channel(false);
    let mut services = JoinSet::new();
    let tftp_files = Arc::new(files::BootFiles::new(cfg.assets_dir.join("tftp")));
    if let Some(addr) = cfg.tftp_listen {
        start_tftp(
            &cfg,
            addr,
            &shared,
            tftp_files.clone(),
            &mut services,
            &stop,
        )?;
    }
    let sightings = inventory::spawn_recorder(shared.inventory.clone(), Duration::from_secs(10));
    let (advertise, interface) = resolve_advertise(&cfg);
    if cfg.dhcp_mode == rackboot_config::DhcpMode::Proxy {
        match advertise {
            None => tracing::warn!(
                "ProxyDHCP not started: no address to advertise; set `interface` (--interface) or `advertise_addr` (--advertise-addr)"
            ),
            Some(ip) => {
                let svc = dhcp_service(&cfg, ip, interface.as_deref(), &shared, sightings.clone())?;
                tracing::info!(advertise = %ip, interface = interface.as_deref().unwrap_or("(all)"), port = cfg.dhcp_port, pxe_port = cfg.pxe_port, "proxydhcp serving");
                services.spawn(svc.run(stop.clone()));
            }
        }
    }
    let (power, reconciler) = start_power_and_lifecycle(&cfg, &shared, &mut services, &stop);
    if cfg.mode == rackboot_config::Mode::Omni {
        crate::omni_link::link(
            &cfg,
            shared.metrics.omni.clone(),
            shared.inventory.clone(),
            reconciler.clone(),
            power.clone(),
        )?
        .spawn(&mut services, &stop);
    }
    let agent_link = crate::agent_link::AgentLinkService::new(
        shared.inventory.clone(),
        reconciler.agents.clone(),
        reconciler.handle(),
    );
    let metal_agent = crate::metal_agent::MetalAgentService {
        inventory: shared.inventory.clone(),
        agents: reconciler.agents.clone(),
        lifecycle: reconciler.handle(),
    };
    start_boot_http(
        &cfg,
        &shared,
        advertise,
        tftp_files,
        sightings,
        reconciler.handle(),
        (agent_link, metal_agent),
        &mut services,
        &stop,
    )
    .await?;
    let state = AdminState {
        lifecycle: reconciler,
        power,
        inventory: shared.inventory.clone(),
        metrics: shared.metrics.clone(),
        token: token.clone(),
        loopback: cfg.admin_listen.ip().is_loopback(),
    };
    let admin = start_admin(&cfg, state, &token, &stop).await?;

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

fn start_tftp(
    cfg: &Config,
    addr: SocketAddr,
    shared: &Shared,
    files: Arc<files::BootFiles>,
    services: &mut Services,
    stop: &watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let socket = net::bind_udp(addr, cfg.interface.as_deref(), false).map_err(|source| {
        ServeError::Bind {
            what: "tftp",
            addr,
            source,
        }
    })?;
    let engine = tftp_engine(cfg);
    let limits = tftp::TftpLimits {
        max_transfers: cfg.tftp_max_transfers,
        max_per_client: cfg.tftp_max_transfers_per_client,
    };
    let root = files.root().display().to_string();
    let svc = tftp::TftpService::new(
        socket,
        files,
        engine,
        limits,
        cfg.tftp_single_port,
        shared.metrics.clone(),
    )
    .with_gso(cfg.tftp_gso);
    tracing::info!(listen = %svc.local_addr().unwrap_or(addr), %root, single_port = cfg.tftp_single_port, "tftp serving");
    services.spawn(svc.run(stop.clone()));
    Ok(())
}

/// The TFTP engine's settings from the `[tftp]` section.
fn tftp_engine(cfg: &Config) -> rackboot_tftp::EngineConfig {
    rackboot_tftp::EngineConfig {
        max_blksize: cfg.tftp_max_blksize,
        max_windowsize: cfg.tftp_max_windowsize,
        default_timeout: cfg.tftp_timeout,
        min_timeout: cfg.tftp_min_timeout,
        max_retries: cfg.tftp_max_retries,
        tail_probe: cfg.tftp_tail_probe,
    }
}

fn start_power_and_lifecycle(
    cfg: &Config,
    shared: &Shared,
    services: &mut Services,
    stop: &watch::Receiver<bool>,
) -> (Arc<power::PowerService>, Arc<lifecycle::Reconciler>) {
    let power = Arc::new(
        power::PowerService::new(
            shared.inventory.clone(),
            power::PowerConfig {
                pacing: rackboot_bmc::PacingConfig {
                    min_interval: Duration::from_millis(cfg.bmc_min_interval_ms),
                    verify_timeout: Duration::from_secs(cfg.bmc_verify_timeout_secs),
                    ..Default::default()
                },
                poll_interval: Duration::from_secs(cfg.bmc_poll_interval_secs.max(1)),
                max_parallel: cfg.bmc_max_parallel as usize,
            },
        )
        .with_metrics(shared.metrics.clone()),
    );
    if cfg.bmc_poll_interval_secs > 0 {
        services.spawn(power.clone().poll_loop(stop.clone()));
    }
    let (reconciler, rx) = lifecycle::Reconciler::new(
        shared.inventory.clone(),
        power.clone(),
        rackboot_lifecycle::Config {
            idle_power_off_after: cfg.idle_power_off_secs * 1000,
            min_power_interval: cfg.min_power_interval_secs * 1000,
            agent_timeout: cfg.agent_timeout_secs * 1000,
            ..Default::default()
        },
    );
    services.spawn(
        reconciler
            .clone()
            .run(rx, Duration::from_secs(5), stop.clone()),
    );
    (power, reconciler)
}

#[allow(clippy::too_many_arguments)]
async fn start_boot_http(
    cfg: &Config,
    shared: &Shared,
    advertise: Option<Ipv4Addr>,
    tftp_files: Arc<files::BootFiles>,
    sightings: mpsc::Sender<inventory::Sighting>,
    lifecycle: lifecycle::LifecycleHandle,
    (agent_link, metal_agent): (
        crate::agent_link::AgentLinkService,
        crate::metal_agent::MetalAgentService,
    ),
    services: &mut Services,
    stop: &watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let addr = cfg.http_listen;
    let listener = crate::net::bind_tcp(addr).map_err(|source| ServeError::Bind {
        what: "boot http",
        addr,
        source,
    })?;
    let congestion = boot_http_congestion(&listener, cfg.http_tcp_congestion.as_deref());
    let local = listener.local_addr().unwrap_or(addr);
    let ip = advertise.map(IpAddr::V4).unwrap_or(local.ip());
    let cache = Arc::new(crate::asset_cache::AssetCache::new(
        cfg.data_dir.join("cache"),
    ));
    let boot = boot_http::BootHttp {
        inventory: shared.inventory.clone(),
        metrics: shared.metrics.clone(),
        tftp_files,
        assets: Arc::new(files::BootFiles::new(cfg.assets_dir.clone())),
        cache: cache.clone(),
        cached_files: Arc::new(files::BootFiles::new(cache.content_dir())),
        sightings,
        lifecycle: Some(lifecycle),
        appliance: SocketAddr::new(ip, local.port()).to_string(),
        agent: rackboot_ipxe::BootMode::Agent {
            kernel: cfg.agent_kernel.clone(),
            initrds: cfg.agent_initrds.clone(),
            cmdline: cfg.agent_cmdline.clone(),
        },
        init_rounds: cfg.init_rounds,
        recent_boots: Default::default(),
        templates: Default::default(),
    };
    tracing::info!(listen = %local, appliance = %boot.appliance, assets = %cfg.assets_dir.display(), tcp_congestion = %congestion, "boot http serving");
    // The agent link (gRPC over HTTP/2 cleartext) shares the boot HTTP port.
    // So does the Talos metal agent's reverse tunnel (the path Omni's provider serves it on).
    let tunnel = metal_agent.into_server();
    let router = boot_http::router(boot.clone())
        .route_service(
            "/rackboot.agent.v1.AgentLink/Connect",
            agent_link.into_server(),
        )
        .route_service(
            "/grpctunnel.v1.TunnelService/OpenReverseTunnel",
            tunnel.clone(),
        )
        .route_service("/grpctunnel.v1.TunnelService/OpenTunnel", tunnel);
    // Files under /assets/ and /tftp/ go out with sendfile; everything else through axum.
    services.spawn(boot_http::fast::serve(listener, router, boot, stop.clone()));
    Ok(())
}

/// Apply `http.tcp_congestion` to the boot HTTP listener (its connections inherit it). When the
/// kernel lacks it or refuses it, the host's default stays and a warning says why. Returns the
/// name in use.
fn boot_http_congestion(listener: &tokio::net::TcpListener, wanted: Option<&str>) -> String {
    if let Some(name) = wanted {
        if let Err(e) = net::set_congestion(listener, name) {
            tracing::warn!(
                key = "http.tcp_congestion",
                wanted = name,
                error = %e,
                using = %net::congestion(listener).unwrap_or_default(),
                "boot http: congestion control unavailable, the host's default is used"
            );
        }
    }
    net::congestion(listener).unwrap_or_else(|_| "unknown".to_string())
}

async fn start_admin(
    cfg: &Config,
    state: AdminState,
    token: &AdminToken,
    stop: &watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, ServeError> {
    let addr = cfg.admin_listen;
    let listener = crate::net::bind_tcp(addr).map_err(|source| ServeError::Bind {
        what: "admin",
        addr,
        source,
    })?;
    tracing::info!(
        admin = %listener.local_addr().unwrap_or(addr),
        data_dir = %cfg.data_dir.display(),
        token_file = %token.path.display(),
        mode = ?cfg.mode,
        open_files = crate::fd_limit::current(),
        "rackboot serving"
    );
    let mut stop = stop.clone();
    let server = axum::serve(listener, admin::router(state)).with_graceful_shutdown(async move {
        let _ = stop.changed().await;
    });
    Ok(tokio::spawn(async move { server.await }))
}

/// The address put in replies and boot URLs, and the interface it lives on.
fn resolve_advertise(cfg: &Config) -> (Option<Ipv4Addr>, Option<String>) {
    use rackboot_config::AdvertiseAddr;
    match (cfg.advertise_addr, cfg.interface.clone()) {
        (AdvertiseAddr::Fixed(ip), Some(i)) => (Some(ip), Some(i)),
        (AdvertiseAddr::Fixed(ip), None) => (Some(ip), net::interface_of(ip)),
        (AdvertiseAddr::Auto, Some(i)) => (net::interface_ipv4(&i), Some(i)),
        (AdvertiseAddr::Auto, None) => match cfg.http_listen.ip() {
            IpAddr::V4(ip) if !ip.is_unspecified() => (Some(ip), net::interface_of(ip)),
            _ => (None, None),
        },
    }
}

fn dhcp_service(
    cfg: &Config,
    advertise: Ipv4Addr,
    interface: Option<&str>,
    shared: &Shared,
    sightings: mpsc::Sender<inventory::Sighting>,
) -> Result<dhcp::DhcpService, ServeError> {
    let bind = |port: u16, what: &'static str| {
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(toml: &str) -> Config {
        let raw = rackboot_config::parse_source(toml).unwrap();
        Config::try_from(&raw).unwrap()
    }

    #[test]
    fn the_tftp_section_reaches_the_engine() {
        let e = tftp_engine(&config(""));
        let d = rackboot_tftp::EngineConfig::default();
        assert_eq!(
            (
                e.default_timeout,
                e.min_timeout,
                e.max_retries,
                e.tail_probe
            ),
            (
                d.default_timeout,
                d.min_timeout,
                d.max_retries,
                d.tail_probe
            )
        );
        let e = tftp_engine(&config(
            "[tftp]\nmax_blksize = 1468\nmax_windowsize = 4\ntimeout_ms = 2500\n\
             min_timeout_ms = 100\nmax_retries = 9\ntail_probe = false\n",
        ));
        assert_eq!((e.max_blksize, e.max_windowsize), (1468, 4));
        assert_eq!(e.default_timeout, std::time::Duration::from_millis(2500));
        assert_eq!(e.min_timeout, std::time::Duration::from_millis(100));
        assert_eq!(e.max_retries, 9);
        assert!(!e.tail_probe);
    }

    /// `http.tcp_congestion` reaches the boot HTTP listener; a name the kernel lacks leaves the
    /// host's default (the service still starts).
    #[tokio::test]
    async fn the_boot_http_listener_takes_the_configured_congestion_control() {
        let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
            .unwrap()
            .trim()
            .to_string();
        let listen = || net::bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let cfg = config("[http]\ntcp_congestion = \"reno\"\n");
        let l = listen();
        assert_eq!(
            boot_http_congestion(&l, cfg.http_tcp_congestion.as_deref()),
            "reno"
        );
        let cfg = config("[http]\ntcp_congestion = \"system\"\n");
        assert_eq!(
            boot_http_congestion(&listen(), cfg.http_tcp_congestion.as_deref()),
            host
        );
        let cfg = config("[http]\ntcp_congestion = \"no-such-cc\"\n");
        assert_eq!(
            boot_http_congestion(&listen(), cfg.http_tcp_congestion.as_deref()),
            host
        );
    }
}
