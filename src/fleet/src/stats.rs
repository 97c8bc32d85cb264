//! The report: per-stage latency percentiles, failures, time to "all booted", and a CSV of
//! every machine (for plotting boot completion over time).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::client::{Client, Outcome, Stage};

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageStats {
    pub stage: Stage,
    pub count: usize,
    pub failed: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub bytes: u64,
    /// Datagrams sent again after a firmware timeout in this stage (DHCP and TFTP).
    pub retries: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub clients: usize,
    pub booted: usize,
    pub failed: usize,
    /// Not finished when the run ended.
    pub unfinished: usize,
    pub stages: Vec<StageStats>,
    /// Power-on → booted, per booted machine.
    pub boot_p50: Option<Duration>,
    pub boot_p90: Option<Duration>,
    pub boot_p99: Option<Duration>,
    /// First power-on → last machine booted (only meaningful when none failed).
    pub all_booted: Option<Duration>,
    pub failures: BTreeMap<String, usize>,
    pub bytes: u64,
    /// Datagrams sent again after a firmware timeout, all machines and stages: a lost DISCOVER,
    /// REQUEST or reply, or a stalled TFTP transfer, costs at least one.
    pub retries: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Report {
    pub fn new(clients: &[Client]) -> Report {
        let mut per: BTreeMap<Stage, (Vec<Duration>, usize, u64, u64)> = BTreeMap::new();
        for c in clients {
            for s in &c.stages {
                let e = per.entry(s.stage).or_default();
                e.3 += u64::from(s.retries);
                match s.end {
                    Some(end) if s.ok => {
                        e.0.push(end.saturating_sub(s.start));
                        e.2 += s.bytes;
                    }
                    _ => e.1 += 1,
                }
            }
        }
        let stages = per
            .into_iter()
            .map(|(stage, (mut d, failed, bytes, retries))| {
                d.sort();
                let p = |q| percentile(&d, q).unwrap_or_default();
                StageStats {
                    stage,
                    count: d.len(),
                    failed,
                    p50: p(50.0),
                    p90: p(90.0),
                    p99: p(99.0),
                    max: d.last().copied().unwrap_or_default(),
                    bytes,
                    retries,
                }
            })
            .collect::<Vec<_>>();
        let first_on = clients
            .iter()
            .map(Client::power_on_at)
            .min()
            .unwrap_or_default();
        let mut boot: Vec<Duration> = Vec::new();
        let mut last = Duration::ZERO;
        let mut failures = BTreeMap::new();
        let (mut booted, mut failed, mut unfinished) = (0, 0, 0);
        for c in clients {
            match &c.outcome {
                Some(Outcome::Booted { at }) => {
                    booted += 1;
                    boot.push(at.saturating_sub(c.power_on_at()));
                    last = last.max(at.saturating_sub(first_on));
                }
                Some(Outcome::Failed { stage, reason, .. }) => {
                    failed += 1;
                    let key = format!(
                        "{} in {}",
                        reason,
                        stage.map(Stage::name).unwrap_or("power-on")
                    );
                    *failures.entry(key).or_insert(0) += 1;
                }
                None => unfinished += 1,
            }
        }
        boot.sort();
        let bytes = stages.iter().map(|s| s.bytes).sum();
        let retries = stages.iter().map(|s| s.retries).sum();
        Report {
            clients: clients.len(),
            booted,
            failed,
            unfinished,
            stages,
            boot_p50: percentile(&boot, 50.0),
            boot_p90: percentile(&boot, 90.0),
            boot_p99: percentile(&boot, 99.0),
            all_booted: (booted == clients.len() && booted > 0).then_some(last),
            failures,
            bytes,
            retries,
        }
    }

    /// Markdown for people.
    pub fn markdown(&self, label: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{label}: {} clients, {} booted, {} failed, {} unfinished; all booted: {}",
            self.clients,
            self.booted,
            self.failed,
            self.unfinished,
            self.all_booted
                .map(|d| format!("{:.2} s", d.as_secs_f64()))
                .unwrap_or_else(|| "no".into())
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| stage | ok | failed | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | MB | retries |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for st in &self.stages {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                st.stage,
                st.count,
                st.failed,
                ms(st.p50),
                ms(st.p90),
                ms(st.p99),
                ms(st.max),
                st.bytes as f64 / 1e6,
                st.retries
            );
        }
        let d = |o: Option<Duration>| o.map(|d| format!("{:.1}", ms(d))).unwrap_or("-".into());
        let _ = writeln!(
            s,
            "| power-on → booted | {} | {} | {} | {} | {} | - | {:.1} | {} |",
            self.booted,
            self.failed + self.unfinished,
            d(self.boot_p50),
            d(self.boot_p90),
            d(self.boot_p99),
            self.bytes as f64 / 1e6,
            self.retries
        );
        let _ = writeln!(
            s,
            "\nretries: datagrams a machine sent again after its firmware timeout (4, 8, 16, 32 s) \
             in a DHCP or TFTP stage; each is a lost request or reply or a stalled transfer. HTTP \
             stages have none: TCP recovers their losses."
        );
        for (reason, n) in &self.failures {
            let _ = writeln!(s, "\n- failed: {n} × {reason}");
        }
        s
    }

    /// `key=value` lines for scripts.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let secs = |o: Option<Duration>| {
            o.map(|d| format!("{:.3}", d.as_secs_f64()))
                .unwrap_or("-".into())
        };
        let _ = writeln!(s, "clients={}", self.clients);
        let _ = writeln!(s, "booted={}", self.booted);
        let _ = writeln!(s, "failed={}", self.failed);
        let _ = writeln!(s, "unfinished={}", self.unfinished);
        let _ = writeln!(s, "all_booted_s={}", secs(self.all_booted));
        let _ = writeln!(s, "boot_p50_s={}", secs(self.boot_p50));
        let _ = writeln!(s, "boot_p90_s={}", secs(self.boot_p90));
        let _ = writeln!(s, "boot_p99_s={}", secs(self.boot_p99));
        let _ = writeln!(s, "bytes={}", self.bytes);
        let _ = writeln!(s, "retries={}", self.retries);
        for st in &self.stages {
            let n = st.stage.name();
            let _ = writeln!(s, "stage.{n}.ok={}", st.count);
            let _ = writeln!(s, "stage.{n}.failed={}", st.failed);
            let _ = writeln!(s, "stage.{n}.p50_ms={:.2}", ms(st.p50));
            let _ = writeln!(s, "stage.{n}.p90_ms={:.2}", ms(st.p90));
            let _ = writeln!(s, "stage.{n}.p99_ms={:.2}", ms(st.p99));
            let _ = writeln!(s, "stage.{n}.max_ms={:.2}", ms(st.max));
            let _ = writeln!(s, "stage.{n}.retries={}", st.retries);
        }
        s
    }
}

/// One CSV row per machine: completion time (from the first power-on) and per-stage totals.
pub fn csv(clients: &[Client]) -> String {
    let first_on = clients
        .iter()
        .map(Client::power_on_at)
        .min()
        .unwrap_or_default();
    let mut s = String::from("client,mac,kind,outcome,completed_s,boot_s,fail_stage,reason");
    for st in Stage::ALL {
        let _ = write!(s, ",{}_ms", st.name());
    }
    s.push('\n');
    for (i, c) in clients.iter().enumerate() {
        let mac = c
            .mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let (outcome, at, stage, reason) = match &c.outcome {
            Some(Outcome::Booted { at }) => ("booted", Some(*at), None, String::new()),
            Some(Outcome::Failed { at, stage, reason }) => {
                ("failed", Some(*at), *stage, reason.replace(',', ";"))
            }
            None => ("unfinished", None, None, String::new()),
        };
        let f = |d: Option<Duration>| {
            d.map(|d| format!("{:.4}", d.as_secs_f64()))
                .unwrap_or_default()
        };
        let _ = write!(
            s,
            "{i},{mac},{},{outcome},{},{},{},{reason}",
            c.kind.name(),
            f(at.map(|a| a.saturating_sub(first_on))),
            f(at.map(|a| a.saturating_sub(c.power_on_at()))),
            stage.map(Stage::name).unwrap_or("")
        );
        for st in Stage::ALL {
            let total: Duration = c
                .stages
                .iter()
                .filter(|r| r.stage == st)
                .filter_map(|r| r.end.map(|e| e.saturating_sub(r.start)))
                .sum();
            let any = c.stages.iter().any(|r| r.stage == st);
            if any {
                let _ = write!(s, ",{:.2}", ms(total));
            } else {
                s.push(',');
            }
        }
        s.push('\n');
    }
    s
}
