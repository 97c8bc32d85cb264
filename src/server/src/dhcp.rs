//! ProxyDHCP shell around the sans-IO core (`rackboot-dhcp`): two UDP sockets (67 and 4011,
//! `SO_REUSEADDR`, `SO_BROADCAST`, bound to the provisioning interface), each datagram handed to
//! [`rackboot_dhcp::handle`], the reply sent where the core says, counters bumped, and the
//! client's sighting passed to the inventory recorder without waiting (a full queue drops the
//! sighting, never the reply).

use crate::inventory::Sighting;
use crate::metrics::Metrics;
use rackboot_dhcp::{ArrivalPort, Outcome, ProxyConfig};
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

pub struct DhcpService {
    pub dhcp: UdpSocket,
    pub pxe: UdpSocket,
    pub config: ProxyConfig,
    pub metrics: Arc<Metrics>,
    pub sightings: mpsc::Sender<Sighting>,
}

impl DhcpService {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut b67 = vec![0u8; 4096];
        let mut b4011 = vec![0u8; 4096];
        loop {
            let (port, n, from) = tokio::select! {
                r = self.dhcp.recv_from(&mut b67) => match r {
                    Ok((n, from)) => (ArrivalPort::Dhcp, n, from),
                    Err(e) => { tracing::debug!(error = %e, "dhcp recv"); continue; }
                },
                r = self.pxe.recv_from(&mut b4011) => match r {
                    Ok((n, from)) => (ArrivalPort::Pxe, n, from),
                    Err(e) => { tracing::debug!(error = %e, "pxe recv"); continue; }
                },
                _ = shutdown.changed() => return,
            };
            let SocketAddr::V4(from) = from else { continue };
            let payload = match port {
                ArrivalPort::Dhcp => &b67[..n],
                ArrivalPort::Pxe => &b4011[..n],
            };
            self.handle(payload, port, from).await;
        }
    }

    async fn handle(&self, payload: &[u8], port: ArrivalPort, from: SocketAddrV4) {
        let d = rackboot_dhcp::handle(payload, port, from, &self.config);
        let arch = d
            .seen
            .as_ref()
            .and_then(|s| s.arch)
            .map(|a| a.to_string())
            .unwrap_or_default();
        match &d.outcome {
            Outcome::Ignored(reason) => {
                let kind = if reason.label() == "malformed" {
                    "malformed"
                } else {
                    "ignored"
                };
                Metrics::inc(&self.metrics.dhcp, kind, reason.label());
                tracing::trace!(%from, reason = reason.label(), "dhcp ignored");
            }
            o => Metrics::inc(&self.metrics.dhcp, o.label(), &arch),
        }
        if let Some(reply) = &d.reply {
            let sock = match port {
                ArrivalPort::Dhcp => &self.dhcp,
                ArrivalPort::Pxe => &self.pxe,
            };
            match sock.send_to(&reply.bytes, SocketAddr::V4(reply.dest)).await {
                Ok(_) => {
                    tracing::debug!(%from, dest = %reply.dest, outcome = d.outcome.label(), arch, "proxydhcp reply")
                }
                Err(e) => {
                    Metrics::inc(&self.metrics.dhcp, "send_failed", "");
                    tracing::warn!(error = %e, dest = %reply.dest, "proxydhcp reply not sent");
                }
            }
        }
        if let Some(seen) = d.seen {
            let s = Sighting {
                mac: seen.mac,
                uuid: seen.uuid,
                arch: seen.arch,
                vendor_class: Some(seen.vendor_class),
                via: "dhcp",
                note: None,
            };
            if self.sightings.try_send(s).is_err() {
                Metrics::inc(&self.metrics.dhcp, "sighting_dropped", "queue_full");
            }
        }
    }
}
