//! `omni-double`: run the Omni test double as a process, or make service-account keys.
//!
//! ```text
//! omni-double serve --listen ADDR --control ADDR --provider-id ID --public-key FILE...
//!                   [--state-file FILE] [--restore-on-start] [--history-capacity N]
//! omni-double keygen --id ID --out-key FILE --out-public FILE [--expired] [--no-sign]
//!                    [--lifetime-secs N]
//! ```
//! `serve` prints one JSON line `{"grpc":"ADDR","control":"ADDR"}` with the bound addresses
//! once both listen (use port 0 to let the OS pick), then runs until SIGINT/SIGTERM.
//! `keygen` writes the service-account key (base64 JSON, mode 0600) and the armored public key,
//! and prints `{"name","fingerprint"}`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rackboot_omni_double::keygen::{self, KeyOptions};
use rackboot_omni_double::{Double, DoubleConfig};

#[derive(Parser)]
#[command(
    name = "omni-double",
    about = "Strict test double of Omni's infra-provider API"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the signed COSI State API and the control API.
    Serve {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        control: SocketAddr,
        #[arg(long)]
        provider_id: String,
        /// Armored service-account public key (repeatable).
        #[arg(long = "public-key", required = true)]
        public_keys: Vec<PathBuf>,
        #[arg(long)]
        state_file: Option<PathBuf>,
        #[arg(long)]
        restore_on_start: bool,
        #[arg(long, default_value_t = 1024)]
        history_capacity: usize,
    },
    /// Make a service-account key as Omni issues it.
    Keygen {
        #[arg(long)]
        id: String,
        #[arg(long)]
        out_key: PathBuf,
        #[arg(long)]
        out_public: PathBuf,
        #[arg(long)]
        expired: bool,
        #[arg(long)]
        no_sign: bool,
        #[arg(long, default_value_t = keygen::DEFAULT_LIFETIME.as_secs())]
        lifetime_secs: u64,
    },
}

fn write_private(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

async fn serve(cfg: DoubleConfig, listen: SocketAddr, control: SocketAddr) -> anyhow::Result<()> {
    let running = Double::new(&cfg)?.spawn(listen, control).await?;
    println!(
        "{}",
        serde_json::json!({"grpc": running.grpc_addr.to_string(), "control": running.control_addr.to_string()})
    );
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    running.stop().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    match Cli::parse().cmd {
        Cmd::Serve {
            listen,
            control,
            provider_id,
            public_keys,
            state_file,
            restore_on_start,
            history_capacity,
        } => {
            let keys = public_keys
                .iter()
                .map(|p| {
                    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut cfg = DoubleConfig::new(&provider_id, keys);
            cfg.state_file = state_file;
            cfg.restore_on_start = restore_on_start;
            cfg.history_capacity = history_capacity;
            cfg.history_gap = (history_capacity / 64)
                .max(1)
                .min(history_capacity.saturating_sub(1));
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(cfg, listen, control))
        }
        Cmd::Keygen {
            id,
            out_key,
            out_public,
            expired,
            no_sign,
            lifetime_secs,
        } => {
            let opts = KeyOptions {
                provider_id: id,
                lifetime: Duration::from_secs(lifetime_secs),
                expired,
                sign: !no_sign,
            };
            let key = keygen::generate(&opts, SystemTime::now())?;
            write_private(&out_key, &key.service_account_key)?;
            std::fs::write(&out_public, &key.public_armored)
                .with_context(|| format!("writing {}", out_public.display()))?;
            println!(
                "{}",
                serde_json::json!({"name": key.name, "fingerprint": key.fingerprint})
            );
            Ok(())
        }
    }
}
