//! Prometheus metrics: one registry for the whole process; services add their families here.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Labels `kind` (what happened) and `detail` (arch, option, reason…).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: Cow<'static, str>,
    pub detail: Cow<'static, str>,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    started: Instant,
    uptime: Gauge<f64, AtomicU64>,
    store_bytes: Gauge,
    store_writable: Gauge,
    pub admin_requests: Family<ReasonLabels, Counter>,
    pub dhcp: Family<KindLabels, Counter>,
    pub tftp: Family<KindLabels, Counter>,
    pub http: Family<KindLabels, Counter>,
    pub tftp_bytes: Counter,
    pub tftp_retransmits: Counter,
    pub tftp_tail_probes: Counter,
    pub tftp_coalesced: Counter,
    pub tftp_active: Gauge,
    /// Seconds to answer `GET /ipxe/boot.ipxe`.
    pub boot_script_seconds: Histogram,
    /// Seconds of completed TFTP transfers.
    pub tftp_transfer_seconds: Histogram,
    /// Seconds of BMC calls, by driver (`ipmi`, `redfish`) and outcome (`ok`, `error`).
    pub bmc_call_seconds: Family<KindLabels, Histogram>,
    /// Failed BMC calls by machine.
    pub bmc_failures: Family<ReasonLabels, Counter>,
    /// Machines by lifecycle state (sampled at scrape time).
    pub machines: Family<ReasonLabels, Gauge>,
    /// The Omni link's state (disabled in standalone mode); its heartbeat age is exported.
    pub omni: Arc<crate::omni_link::OmniShared>,
    omni_heartbeat_age: Gauge<f64, AtomicU64>,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ]
    .into_iter()
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rackboot");
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("build_info", "rackboot build information", build);
        let uptime = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "uptime_seconds",
            "Seconds since the server started",
            uptime.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_size_bytes",
            "Size of the inventory store on disk",
            store_bytes.clone(),
        );
        let store_writable = Gauge::default();
        store_writable.set(1);
        registry.register(
            "store_writable",
            "1 when the inventory accepts writes, 0 while the data disk is full or failing",
            store_writable.clone(),
        );
        let admin_requests = Family::default();
        registry.register(
            "admin_refused",
            "Admin API requests refused, by reason",
            admin_requests.clone(),
        );
        let dhcp = Family::default();
        registry.register(
            "dhcp_packets",
            "ProxyDHCP packets by kind (request, reply, ignored, malformed) and detail",
            dhcp.clone(),
        );
        let tftp = Family::default();
        registry.register(
            "tftp_transfers",
            "TFTP events by kind (started, completed, failed, refused, option) and detail",
            tftp.clone(),
        );
        let http = Family::default();
        registry.register(
            "boot_http_requests",
            "Boot HTTP requests by kind (init, boot, tftp_file, asset, config) and detail",
            http.clone(),
        );
        let tftp_bytes = Counter::default();
        registry.register(
            "tftp_sent_bytes",
            "TFTP payload bytes sent",
            tftp_bytes.clone(),
        );
        let tftp_retransmits = Counter::default();
        registry.register(
            "tftp_retransmitted_datagrams",
            "TFTP OACK/DATA datagrams sent again (timeouts, loss reports), of finished transfers",
            tftp_retransmits.clone(),
        );
        let tftp_tail_probes = Counter::default();
        registry.register(
            "tftp_tail_probes",
            "TFTP windows whose last block was sent again after twice the round trip without an \
             ACK (a lost last block; included in tftp_retransmitted_datagrams), of finished transfers",
            tftp_tail_probes.clone(),
        );
        let tftp_coalesced = Counter::default();
        registry.register(
            "tftp_coalesced_datagrams",
            "TFTP datagrams that left in UDP GSO sends of a window's blocks (one system call for \
             several datagrams), of finished transfers",
            tftp_coalesced.clone(),
        );
        let tftp_active = Gauge::default();
        registry.register(
            "tftp_active_transfers",
            "TFTP transfers in progress",
            tftp_active.clone(),
        );
        let boot_script_seconds = Histogram::new(seconds_buckets());
        registry.register(
            "boot_script_seconds",
            "Time to answer boot.ipxe",
            boot_script_seconds.clone(),
        );
        let tftp_transfer_seconds = Histogram::new(seconds_buckets());
        registry.register(
            "tftp_transfer_seconds",
            "Duration of completed TFTP transfers",
            tftp_transfer_seconds.clone(),
        );
        let bmc_call_seconds: Family<KindLabels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(seconds_buckets()));
        registry.register(
            "bmc_call_seconds",
            "BMC calls by driver (kind) and outcome (detail)",
            bmc_call_seconds.clone(),
        );
        let bmc_failures = Family::default();
        registry.register(
            "bmc_failures",
            "Failed BMC calls, by machine (reason label)",
            bmc_failures.clone(),
        );
        let machines = Family::default();
        registry.register(
            "machines",
            "Machines by lifecycle state (reason label)",
            machines.clone(),
        );
        let omni_heartbeat_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "omni_heartbeat_age_seconds",
            "Seconds since Omni last accepted a heartbeat (-1: never; absent in standalone mode)",
            omni_heartbeat_age.clone(),
        );
        Self {
            omni: Arc::default(),
            omni_heartbeat_age,
            boot_script_seconds,
            tftp_transfer_seconds,
            bmc_call_seconds,
            bmc_failures,
            machines,
            registry: Mutex::new(registry),
            started: Instant::now(),
            uptime,
            store_bytes,
            store_writable,
            admin_requests,
            dhcp,
            tftp,
            http,
            tftp_bytes,
            tftp_retransmits,
            tftp_tail_probes,
            tftp_coalesced,
            tftp_active,
        }
    }

    /// Count one event of a `kind`/`detail` family. The labels are fixed names, so an existing
    /// counter is found without building owned label strings (the boot HTTP and TFTP count
    /// every request).
    pub fn inc(family: &Family<KindLabels, Counter>, kind: &'static str, detail: &'static str) {
        family
            .get_or_create(&KindLabels {
                kind: Cow::Borrowed(kind),
                detail: Cow::Borrowed(detail),
            })
            .inc();
    }

    /// Prometheus text exposition, with the sampled gauges refreshed.
    /// Record the number of machines per state (called at scrape time).
    pub fn set_machine_states<'a>(&self, states: impl Iterator<Item = &'a str>) {
        self.machines.clear();
        for st in states {
            self.machines
                .get_or_create(&ReasonLabels {
                    reason: st.to_string(),
                })
                .inc();
        }
    }

    /// Whether the inventory accepts writes (sampled at scrape time).
    pub fn set_store_writable(&self, writable: bool) {
        self.store_writable.set(i64::from(writable));
    }

    pub fn render(&self, store_size: u64) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let link = self.omni.status();
        self.omni_heartbeat_age.set(match link.last_heartbeat_ms {
            Some(t) => rackboot_store::now_ms().saturating_sub(t) as f64 / 1000.0,
            None => -1.0,
        });
        self.store_bytes
            .set(i64::try_from(store_size).unwrap_or(i64::MAX));
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.push_str("# encoding failed\n");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
