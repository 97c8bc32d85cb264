#![allow(clippy::unwrap_used)]
//! Whole machines against an in-memory segment: a site DHCP server (addresses), a ProxyDHCP +
//! TFTP + HTTP appliance answering as rackboot does, serving rackboot's real scripts.
use super::*;
use rackboot_ipxe::{init_script, render, Arch, BootMode, RenderCtx, Rendered};

const SITE: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 1);
const APPL: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 2);
const BASE: &str = "http://10.97.0.2:50042";
const NBP_SIZE: usize = 10_000;
const IMG_SIZE: usize = 300_000;

#[derive(Default)]
struct Segment {
    /// Answer nothing at all.
    silent: bool,
    /// Hand every client (iPXE too) a TFTP boot program: a chainload loop.
    loop_nbp: bool,
    /// Lose this many DISCOVERs, then TFTP ACKs (the first ones sent), on the way.
    lose_discovers: usize,
    lose_acks: usize,
    /// TFTP transfer state: (tid port, blksize, window, last block sent).
    tftp: Option<(u16, usize, u16)>,
    rrqs: Vec<Vec<String>>,
    gets: Vec<String>,
    out: Vec<(Duration, Input)>,
    tid: u16,
}

enum Input {
    Dhcp(Vec<u8>),
    Tftp(SocketAddrV4, Vec<u8>),
    Http(u32, Vec<u8>),
}

fn opts(p: &[u8]) -> HashMap<u8, Vec<u8>> {
    let mut m = HashMap::new();
    let mut i = 240;
    while i < p.len() && p[i] != 255 {
        m.insert(p[i], p[i + 2..i + 2 + p[i + 1] as usize].to_vec());
        i += 2 + p[i + 1] as usize;
    }
    m
}

fn dhcp_reply(
    req: &[u8],
    msg: u8,
    yiaddr: Ipv4Addr,
    server: Ipv4Addr,
    vc: Option<&[u8]>,
    file: Option<&str>,
) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 2;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&req[4..8]);
    p[16..20].copy_from_slice(&yiaddr.octets());
    p[20..24].copy_from_slice(&server.octets());
    p[28..34].copy_from_slice(&req[28..34]);
    p.extend_from_slice(&[99, 130, 83, 99, 53, 1, msg, 54, 4]);
    p.extend_from_slice(&server.octets());
    if !yiaddr.is_unspecified() {
        p.extend_from_slice(&[1, 4, 255, 255, 248, 0]);
    }
    if let Some(v) = vc {
        p.extend_from_slice(&[60, v.len() as u8]);
        p.extend_from_slice(v);
    }
    if let Some(f) = file {
        p.extend_from_slice(&[67, f.len() as u8]);
        p.extend_from_slice(f.as_bytes());
    }
    p.push(255);
    p
}

impl Segment {
    fn boot_file(&self, o: &HashMap<u8, Vec<u8>>) -> String {
        let ipxe = o.contains_key(&175);
        let arch = o
            .get(&93)
            .map(|a| u16::from_be_bytes([a[0], a[1]]))
            .unwrap_or(0);
        if ipxe && !self.loop_nbp {
            return format!("{BASE}/ipxe/init.ipxe");
        }
        match arch {
            0 => "undionly.kpxe".into(),
            16 => format!("{BASE}/tftp/x86_64/ipxe.efi"),
            _ => "ipxe.efi".into(),
        }
    }

    fn handle(&mut self, now: Duration, o: Output, mac: [u8; 6]) {
        let at = now + Duration::from_millis(1);
        match o {
            Output::Raw(d) => {
                if self.silent {
                    return;
                }
                let o = opts(&d.payload);
                let vc = o.get(&60).unwrap().clone();
                let family: &[u8] = if vc.starts_with(b"HTTPClient") {
                    b"HTTPClient"
                } else {
                    b"PXEClient"
                };
                let ip = Ipv4Addr::new(10, 97, 1, mac[5]);
                if o[&53][0] == 1 && self.lose_discovers > 0 {
                    self.lose_discovers -= 1;
                    return;
                }
                match (o[&53][0], d.dst.port()) {
                    (1, 67) => {
                        let f = self.boot_file(&o);
                        self.out.push((
                            at,
                            Input::Dhcp(dhcp_reply(
                                &d.payload,
                                2,
                                Ipv4Addr::UNSPECIFIED,
                                APPL,
                                Some(family),
                                Some(&f),
                            )),
                        ));
                        self.out.push((
                            at,
                            Input::Dhcp(dhcp_reply(&d.payload, 2, ip, SITE, None, None)),
                        ));
                    }
                    (3, 67) if o.get(&54) == Some(&SITE.octets().to_vec()) => {
                        self.out.push((
                            at,
                            Input::Dhcp(dhcp_reply(&d.payload, 5, ip, SITE, None, None)),
                        ));
                    }
                    (3, 4011) => {
                        assert_eq!(d.dst.ip(), &APPL);
                        let f = self.boot_file(&o);
                        self.out.push((
                            at,
                            Input::Dhcp(dhcp_reply(
                                &d.payload,
                                5,
                                Ipv4Addr::UNSPECIFIED,
                                APPL,
                                Some(family),
                                Some(&f),
                            )),
                        ));
                    }
                    _ => {}
                }
            }
            Output::TftpOpen
            | Output::TftpClose
            | Output::SetIp { .. }
            | Output::HttpClose { .. } => {}
            Output::TftpSend { to, payload } => self.tftp(at, to, &payload),
            Output::HttpOpen { id, request, .. } => {
                let req = String::from_utf8(request).unwrap();
                let target = req.split(' ').nth(1).unwrap().to_string();
                self.gets.push(target.clone());
                let body = if target.starts_with("/ipxe/init.ipxe") {
                    init_script(BASE, 3).unwrap().into_bytes()
                } else if target.starts_with("/ipxe/boot.ipxe") {
                    let mode = BootMode::Agent {
                        kernel: "agent/vmlinuz".into(),
                        initrds: vec!["agent/initramfs.cpio.gz".into()],
                        cmdline: String::new(),
                    };
                    let ctx = RenderCtx {
                        appliance: "10.97.0.2:50042".into(),
                        machine_id: "m".into(),
                        uuid: "00000000-0000-0000-0000-000000000000".into(),
                        mac: None,
                        arch: Some(Arch::X86_64),
                    };
                    match render(&mode, &ctx).unwrap() {
                        Rendered::Script(s) => s.into_bytes(),
                        r => panic!("{r:?}"),
                    }
                } else if target.starts_with("/tftp/") {
                    vec![1; NBP_SIZE]
                } else {
                    vec![2; IMG_SIZE]
                };
                let mut resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                    .into_bytes();
                resp.extend_from_slice(&body);
                for chunk in resp.chunks(7000) {
                    self.out.push((at, Input::Http(id, chunk.to_vec())));
                }
            }
        }
    }

    fn tftp(&mut self, at: Duration, to: SocketAddrV4, p: &[u8]) {
        let op = u16::from_be_bytes([p[0], p[1]]);
        match op {
            1 => {
                assert_eq!(to, SocketAddrV4::new(APPL, 69));
                let f: Vec<String> = p[2..]
                    .split(|&b| b == 0)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                self.rrqs.push(f.clone());
                let get = |k: &str| {
                    f.iter()
                        .position(|s| s == k)
                        .map(|i| f[i + 1].parse::<usize>().unwrap())
                };
                let blk = get("blksize").unwrap_or(512);
                let win = get("windowsize").unwrap_or(1) as u16;
                self.tid += 1;
                let tid = 40000 + self.tid;
                self.tftp = Some((tid, blk, win));
                let mut oack = vec![0, 6];
                oack.extend_from_slice(format!("blksize\0{blk}\0tsize\0{NBP_SIZE}\0").as_bytes());
                if win > 1 {
                    oack.extend_from_slice(format!("windowsize\0{win}\0").as_bytes());
                }
                self.out
                    .push((at, Input::Tftp(SocketAddrV4::new(APPL, tid), oack)));
            }
            4 if self.lose_acks > 0 => self.lose_acks -= 1,
            4 => {
                let (tid, blk, win) = self.tftp.unwrap();
                assert_eq!(to.port(), tid, "ACK to the transfer's TID");
                let acked = u16::from_be_bytes([p[2], p[3]]) as usize;
                for b in acked + 1..=acked + win as usize {
                    let start = (b - 1) * blk;
                    if start > NBP_SIZE {
                        break;
                    }
                    let end = (start + blk).min(NBP_SIZE);
                    let mut d = vec![0, 3];
                    d.extend_from_slice(&(b as u16).to_be_bytes());
                    d.extend(std::iter::repeat_n(9u8, end - start));
                    self.out
                        .push((at, Input::Tftp(SocketAddrV4::new(APPL, tid), d)));
                    if end - start < blk {
                        break;
                    }
                }
            }
            5 => self.tftp = None,
            _ => {}
        }
    }
}

/// Run one machine on the segment with a fake clock (1 ms steps, jumping to deadlines).
fn boot(kind: Kind, seg: &mut Segment) -> Client {
    let mac = [0x52, 0x54, 0, 0, 0, 9];
    let mut c = Client::new(
        kind,
        mac,
        [9; 16],
        Duration::from_millis(5),
        Settings::default(),
        42,
    );
    let mut now = Duration::ZERO;
    for _ in 0..100_000 {
        if c.outcome.is_some() {
            break;
        }
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        while let Some(o) = c.poll_output() {
            seg.handle(now, o, mac);
        }
        let due: Vec<_> = {
            let (d, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut seg.out)
                .into_iter()
                .partition(|(t, _)| *t <= now);
            seg.out = keep;
            d
        };
        for (_, i) in due {
            match i {
                Input::Dhcp(p) => c.handle_dhcp(now, &p, [2, 0, 0, 0, 0, 2]),
                Input::Tftp(from, p) => c.handle_tftp(now, from, &p),
                Input::Http(id, d) => c.handle_http(now, id, HttpEvent::Data(&d)),
            }
        }
        while let Some(o) = c.poll_output() {
            seg.handle(now, o, mac);
        }
        now = match (seg.out.iter().map(|(t, _)| *t).min(), c.poll_timeout()) {
            (Some(a), _) if a > now => a.min(c.poll_timeout().unwrap_or(a)),
            (Some(_), _) => now,
            (None, Some(t)) => t.max(now),
            (None, None) => break,
        };
    }
    c
}

fn stages(c: &Client) -> Vec<Stage> {
    c.stages.iter().map(|s| s.stage).collect()
}

#[test]
fn uefi_pxe_machine_boots_through_every_stage() {
    let mut seg = Segment::default();
    let c = boot(Kind::Efi7, &mut seg);
    assert!(
        matches!(c.outcome, Some(Outcome::Booted { .. })),
        "{:?} {:?}",
        c.outcome,
        c.stages
    );
    assert_eq!(
        stages(&c),
        vec![
            Stage::Dhcp,
            Stage::Proxy,
            Stage::Nbp,
            Stage::IpxeDhcp,
            Stage::InitScript,
            Stage::ScriptDhcp,
            Stage::BootScript,
            Stage::Kernel,
            Stage::Initrd
        ]
    );
    assert!(c.stages.iter().all(|s| s.ok && s.end.is_some()));
    assert!(c.stages.iter().all(|s| s.retries == 0), "{:?}", c.stages);
    let nbp = c.stages.iter().find(|s| s.stage == Stage::Nbp).unwrap();
    assert_eq!(nbp.bytes, NBP_SIZE as u64);
    // EDK2: the tsize probe, then the real request with windowsize 4.
    assert_eq!(seg.rrqs.len(), 2);
    assert!(!seg.rrqs[0].contains(&"windowsize".to_string()));
    assert!(seg.rrqs[1].contains(&"windowsize".to_string()));
    assert_eq!(seg.gets[0], "/ipxe/init.ipxe");
    assert!(seg.gets[1].starts_with("/ipxe/boot.ipxe?uuid=09090909-0909-0909-0909-090909090909&mac=52-54-00-00-00-09&arch=x86_64"), "{:?}", seg.gets);
    assert_eq!(
        &seg.gets[2..],
        ["/assets/agent/vmlinuz", "/assets/agent/initramfs.cpio.gz"]
    );
    let k = c.stages.iter().find(|s| s.stage == Stage::Kernel).unwrap();
    assert_eq!(k.bytes, IMG_SIZE as u64);
}

#[test]
fn bios_pxe_uses_lockstep_1432_and_buildarch_i386() {
    let mut seg = Segment::default();
    let c = boot(Kind::Bios, &mut seg);
    assert!(
        matches!(c.outcome, Some(Outcome::Booted { .. })),
        "{:?}",
        c.outcome
    );
    assert_eq!(seg.rrqs.len(), 1);
    let r = &seg.rrqs[0];
    assert_eq!(r[0], "undionly.kpxe");
    let i = r.iter().position(|s| s == "blksize").unwrap();
    assert_eq!(r[i + 1], "1432");
    assert!(!r.contains(&"windowsize".to_string()));
    assert!(seg.gets[1].ends_with("arch=i386"), "{:?}", seg.gets);
}

#[test]
fn http_boot_and_ipxe_rom_skip_what_they_do_not_need() {
    let mut seg = Segment::default();
    let c = boot(Kind::Http16, &mut seg);
    assert!(
        matches!(c.outcome, Some(Outcome::Booted { .. })),
        "{:?}",
        c.outcome
    );
    assert_eq!(stages(&c)[..3], [Stage::Dhcp, Stage::Nbp, Stage::IpxeDhcp]);
    assert!(seg.rrqs.is_empty());
    assert_eq!(seg.gets[0], "/tftp/x86_64/ipxe.efi");

    let mut seg = Segment::default();
    let c = boot(Kind::Ipxe, &mut seg);
    assert!(
        matches!(c.outcome, Some(Outcome::Booted { .. })),
        "{:?}",
        c.outcome
    );
    assert_eq!(stages(&c)[..2], [Stage::IpxeDhcp, Stage::InitScript]);
}

#[test]
fn silence_fails_in_dhcp_after_the_firmware_retries() {
    let mut seg = Segment {
        silent: true,
        ..Segment::default()
    };
    let c = boot(Kind::Efi9, &mut seg);
    match c.outcome {
        Some(Outcome::Failed { at, stage, reason }) => {
            assert_eq!(stage, Some(Stage::Dhcp));
            assert!(reason.contains("no address offer"), "{reason}");
            // Sent again at 4, 12 and 28 s; the fourth timeout gives up.
            assert_eq!(c.stages[0].retries, 3, "{:?}", c.stages);
            // Power-on at 5 ms, then 4 + 8 + 16 + 32 s.
            assert_eq!(at, Duration::from_millis(60_005));
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn a_chainload_loop_is_reported() {
    let mut seg = Segment {
        loop_nbp: true,
        ..Segment::default()
    };
    let c = boot(Kind::Bios, &mut seg);
    match c.outcome {
        Some(Outcome::Failed { reason, .. }) => assert!(reason.contains("boot loop"), "{reason}"),
        o => panic!("{o:?}"),
    }
}

/// A lost DISCOVER and a lost TFTP ACK each cost a firmware timeout: they are counted on the
/// stage they happened in, and the report adds them up (the storm's "no lost DISCOVER, no
/// stalled transfer" evidence).
#[test]
fn a_lost_discover_and_a_stalled_transfer_are_counted_where_they_happened() {
    let mut seg = Segment {
        lose_discovers: 1,
        lose_acks: 1,
        ..Segment::default()
    };
    let c = boot(Kind::Bios, &mut seg);
    assert!(
        matches!(c.outcome, Some(Outcome::Booted { .. })),
        "{:?} {:?}",
        c.outcome,
        c.stages
    );
    let retries: Vec<(Stage, u32)> = c.stages.iter().map(|s| (s.stage, s.retries)).collect();
    assert_eq!(
        retries,
        vec![
            (Stage::Dhcp, 1),
            (Stage::Proxy, 0),
            (Stage::Nbp, 1),
            (Stage::IpxeDhcp, 0),
            (Stage::InitScript, 0),
            (Stage::ScriptDhcp, 0),
            (Stage::BootScript, 0),
            (Stage::Kernel, 0),
            (Stage::Initrd, 0),
        ]
    );
    let r = crate::stats::Report::new(std::slice::from_ref(&c));
    assert_eq!(r.retries, 2);
    assert!(r.summary().contains("retries=2\n"), "{}", r.summary());
    assert!(r.summary().contains("stage.nbp.retries=1\n"));
    assert!(r.markdown("x").contains("| nbp | 1 | 0 |"));
}
