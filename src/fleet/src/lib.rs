//! rackboot-fleet: a PXE client fleet simulator for boot-storm benchmarks.
//!
//! N simulated machines, each with its own MAC, boot the way real firmware does, all through one
//! TAP device: firmware DHCP with PXE options (arch 0/7/9/16, or an iPXE ROM), the address offer
//! from the site DHCP server and the ProxyDHCP offer, REQUEST, the ProxyDHCP REQUEST to 4011,
//! the boot program over TFTP (EDK2: blksize 1468, windowsize 4, tsize probe; PXE ROM / iPXE:
//! lock-step blksize 1432) or HTTP, then as iPXE: DHCP again, `init.ipxe`, and whatever the
//! scripts say (`dhcp`, `chain boot.ipxe`, `kernel`, `initrd`, `boot`). Retransmissions follow
//! firmware timing (4/8/16/32 s).
//!
//! Layout: the protocol logic is sans-IO — [`dhcp`], [`tftp`], [`http`], [`script`] and the
//! per-machine state machine [`client`] take bytes and the time and return what to send and
//! when to wake up. [`shell`] is the thin loop: it routes frames from the TAP device to the
//! machines, gives each machine a smoltcp interface (ARP, TCP, UDP once it has an address) and
//! a timer. [`stats`] turns the recorded stage times into the report.
#![forbid(unsafe_code)]

pub mod client;
pub mod dhcp;
pub mod http;
pub mod packet;
pub mod retry;
pub mod script;
pub mod shell;
pub mod stats;
pub mod tftp;

use std::time::Duration;

use client::{Client, Kind, Settings};

/// How the fleet is made up.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub clients: usize,
    /// Weights per firmware kind (round-robin over the weighted list).
    pub mix: Vec<(Kind, u32)>,
    /// Power-on spread: machine i powers on at `i * ramp / clients`.
    pub ramp: Duration,
    /// Third MAC byte and UUID salt, so runs can use distinct machines.
    pub seed: u8,
    pub settings: Settings,
}

/// Parse `bios=1,efi7=1,...` (a bare name means weight 1).
pub fn parse_mix(s: &str) -> Result<Vec<(Kind, u32)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (name, w) = part.split_once('=').unwrap_or((part, "1"));
        let kind = Kind::from_name(name.trim())
            .ok_or_else(|| format!("unknown kind {name:?} (bios, efi7, efi9, http16, ipxe)"))?;
        let w: u32 = w
            .trim()
            .parse()
            .map_err(|_| format!("bad weight in {part:?}"))?;
        if w > 0 {
            out.push((kind, w));
        }
    }
    if out.is_empty() {
        return Err("empty mix".into());
    }
    Ok(out)
}

/// The machines of a fleet: MAC 52:54:<seed>:<index mixed, 3 bytes>, UUID from the index.
pub fn build(spec: &FleetSpec) -> Vec<Client> {
    let wheel: Vec<Kind> = spec
        .mix
        .iter()
        .flat_map(|&(k, w)| std::iter::repeat_n(k, w as usize))
        .collect();
    (0..spec.clients)
        .map(|i| {
            let b = (i as u32).to_be_bytes();
            // A bijective mix of the 24-bit index: unique MACs that are not consecutive (DHCP
            // servers hash MACs to pick addresses; a rack's NICs are not one serial run either).
            let m = ((i as u32).wrapping_mul(0x9e_3779) ^ 0x5a_5a5a) & 0xff_ffff;
            let mb = m.to_be_bytes();
            let mac = [0x52, 0x54, spec.seed, mb[1], mb[2], mb[3]];
            let mut uuid = [0u8; 16];
            uuid[..4].copy_from_slice(&[0xf1, 0xee, 0x70, spec.seed]);
            uuid[12..].copy_from_slice(&b);
            let kind = wheel
                .get(i % wheel.len().max(1))
                .copied()
                .unwrap_or(Kind::Ipxe);
            let on = if spec.clients > 0 {
                spec.ramp.mul_f64(i as f64 / spec.clients as f64)
            } else {
                Duration::ZERO
            };
            Client::new(
                kind,
                mac,
                uuid,
                on,
                spec.settings,
                (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(spec.seed),
            )
        })
        .collect()
}
