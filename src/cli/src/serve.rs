//! `rackboot serve` and `rackboot check-config`: flags → raw config → layered → validated.

use crate::args::ServeArgs;
use anyhow::{Context, Result};
use rackboot_config::{Layer, LogFormat, RawConfig};
use std::path::Path;

pub fn check_config(file: &Path) -> i32 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return 1;
        }
    };
    let problems = rackboot_config::check_source(&text);
    if problems.is_empty() {
        println!("{}: ok", file.display());
        return 0;
    }
    for p in &problems {
        match p.line {
            Some(l) => eprintln!("{}:{l}: {}: {}", file.display(), p.key, p.message),
            None => eprintln!("{}: {}: {}", file.display(), p.key, p.message),
        }
    }
    eprintln!("{}: {} problem(s)", file.display(), problems.len());
    1
}

fn flags(a: &ServeArgs) -> RawConfig {
    let mut r = RawConfig {
        mode: a.mode.clone(),
        data_dir: a.data_dir.clone(),
        interface: a.interface.clone(),
        advertise_addr: a.advertise_addr.clone(),
        assets_dir: a.assets_dir.clone(),
        ..Default::default()
    };
    r.log.format = a.log_format.clone();
    r.log.level = a.log_level.clone();
    r.admin.listen = a.admin_listen.clone();
    r.admin.token_file = a.admin_token_file.clone();
    r.http.listen = a.boot_http_listen.clone();
    r.tftp.listen = a.tftp_listen.clone();
    r.tftp.single_port = a.tftp_single_port;
    r.dhcp.mode = a.dhcp_mode.clone();
    r.dhcp.port = a.dhcp_port;
    r.dhcp.pxe_port = a.pxe_port;
    r.omni.endpoint = a.omni_endpoint.clone();
    r.omni.key_file = a.omni_key_file.clone();
    r.omni.provider_id = a.provider_id.clone();
    r.omni.ca_file = a.omni_ca_file.clone();
    r.omni.insecure_skip_verify = a.omni_insecure_skip_verify;
    r.omni.image_factory_url = a.image_factory_url.clone();
    r.omni.image_factory_pxe_url = a.image_factory_pxe_url.clone();
    r.omni.install_boot = a.omni_install_boot.clone();
    r.omni.agent = a.omni_agent.clone();
    r.omni.agent_talos_version = a.omni_agent_talos_version.clone();
    r
}

pub fn serve(a: ServeArgs) -> Result<i32> {
    // Before any thread starts: one malloc arena per core (see rackboot_malloc).
    let arenas = rackboot_malloc::limit_arenas(rackboot_malloc::server_arenas());
    // Free pages between live allocations go back to the kernel while the server is busy.
    let trimmer = rackboot_malloc::spawn_trimmer(rackboot_malloc::TRIM_EVERY);
    let file = match &a.config {
        Some(p) => Some((
            p.clone(),
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config file {}", p.display()))?,
        )),
        None => None,
    };
    let file_raw = match &file {
        Some((p, text)) => rackboot_config::parse_source(text).map_err(|problems| {
            rackboot_config::ConfigError::Invalid {
                path: p.clone(),
                problems,
            }
        })?,
        None => RawConfig::default(),
    };
    let raw = flags(&a).over(file_raw);
    let config =
        rackboot_config::finish(&raw, file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))?;
    init_logging(config.log_format, &config.log_level);
    tracing::debug!(?arenas, "malloc arenas");
    if let Err(e) = trimmer {
        tracing::warn!(error = %e, "cannot start the heap trimmer: freed memory stays resident");
    }
    match rackboot_server::fd_limit::raise_open_files() {
        Ok((_, now)) if now < rackboot_server::fd_limit::COMFORTABLE => tracing::warn!(
            limit = now,
            "the open-file limit is low for a boot storm (each TFTP transfer and HTTP download \
             holds descriptors); raise the hard limit (ulimit -Hn, LimitNOFILE=)"
        ),
        Ok((before, now)) if before != now => {
            tracing::info!(from = before, to = now, "open-file limit raised")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(rackboot_server::run(config)).map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        tracing::error!("{msg}");
        anyhow::anyhow!(msg)
    })?;
    Ok(0)
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Whatever level the operator asks for, libraries that dump key material or raw protocol
    // frames at debug/trace stay quiet (see `secret_bearing`).
    let guard = tracing_subscriber::filter::filter_fn(|m| {
        !secret_bearing(m.target()) || *m.level() <= tracing::Level::INFO
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Human => fmt.boxed(),
    };
    // The level filter goes outermost: its max level becomes the global one (tracing's and the
    // `log` crate's), so disabled debug/trace calls — sled logs through `log` on every read —
    // are skipped at the call site instead of reaching the filters on every call.
    tracing_subscriber::registry()
        .with(fmt.with_filter(guard).with_filter(filter))
        .init();
}

/// Log targets whose debug/trace output can carry secrets: rpgp prints the parsed Omni
/// service-account key (secret key packets included); h2/hyper/tonic/rustls print frames and
/// headers (admin tokens, request signatures).
fn secret_bearing(target: &str) -> bool {
    [
        "pgp",
        "h2",
        "hyper",
        "hyper_util",
        "tonic",
        "rustls",
        "ureq",
    ]
    .iter()
    .any(|t| {
        target
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

#[cfg(test)]
mod log_tests {
    #[test]
    fn key_parsing_libraries_are_capped() {
        assert!(super::secret_bearing("pgp::packet::secret_key_parser"));
        assert!(super::secret_bearing("h2"));
        assert!(!super::secret_bearing("pgpx"));
        assert!(!super::secret_bearing("rackboot_server::omni_link"));
    }
}
