//! A small fake BMC (the managed-system side of RMCP+ for cipher suites 3 and 17), written
//! independently of the crate's session code (own offsets, own HMAC/AES-CBC plumbing), and a
//! fake-clock harness that shuttles datagrams between it and the sans-IO client.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use hmac::{Hmac, Mac};
use rackboot_ipmi::{Client, ClientConfig, Command, IpmiError, Response};

pub const SIDC: u32 = 0x5a5a_0101;
pub const GUID: [u8; 16] = [0xa1; 16];
pub const RC: [u8; 16] = [0xc3; 16];

fn mac(sha256: bool, key: &[u8], data: &[u8]) -> Vec<u8> {
    if sha256 {
        let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn cksum(b: &[u8]) -> u8 {
    0u8.wrapping_sub(b.iter().fold(0u8, |a, x| a.wrapping_add(*x)))
}

/// A session as the BMC sees it.
#[derive(Debug, Clone)]
pub struct BmcSession {
    pub sha256: bool,
    pub sidm: u32,
    pub rm: Vec<u8>,
    pub role: u8,
    pub user: Vec<u8>,
    pub k1: Vec<u8>,
    pub k2: Vec<u8>,
    pub active: bool,
    pub out_seq: u32,
}

/// One IPMI request the fake BMC executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub session_seq: u32,
    pub rq_seq: u8,
    pub netfn: u8,
    pub cmd: u8,
    pub data: Vec<u8>,
}

pub struct FakeBmc {
    pub user: Vec<u8>,
    pub password: Vec<u8>,
    pub suites: Vec<u8>,
    /// Reply to a refused suite with only `[tag, status]` (as ipmi_sim does); else 8 bytes.
    pub short_refusal: bool,
    /// Ignore Open Session Requests for these suites entirely.
    pub silent_suites: Vec<u8>,
    pub session: Option<BmcSession>,
    pub drop_replies: usize,
    pub mute: bool,
    pub power_on: bool,
    pub boot_flags: [u8; 5],
    /// Completion code for Set System Boot Options by parameter number.
    pub boot_param_cc: Vec<(u8, u8)>,
    pub seen: Vec<Seen>,
    pub rakp3_status: Vec<u8>,
    pub sessions_opened: u32,
    /// Every reply sent (after drops), for replay/mutation tests.
    pub sent: Vec<Vec<u8>>,
    /// The user's privilege limit: Set Session Privilege Level above it gets 0x81.
    pub max_privilege: u8,
}

impl FakeBmc {
    pub fn new(suites: &[u8]) -> FakeBmc {
        FakeBmc {
            user: b"admin".to_vec(),
            password: b"password".to_vec(),
            suites: suites.to_vec(),
            short_refusal: true,
            silent_suites: Vec::new(),
            session: None,
            drop_replies: 0,
            mute: false,
            power_on: false,
            boot_flags: [0, 0x08, 0, 0, 0],
            boot_param_cc: Vec::new(),
            seen: Vec::new(),
            rakp3_status: Vec::new(),
            sessions_opened: 0,
            sent: Vec::new(),
            max_privilege: 4,
        }
    }

    fn rmcpp(ptype: u8, sid: u32, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![6, 0, 0xff, 7, 6, ptype];
        p.extend(sid.to_le_bytes());
        p.extend(seq.to_le_bytes());
        p.extend((payload.len() as u16).to_le_bytes());
        p.extend(payload);
        p
    }

    /// Process one datagram; return the replies.
    pub fn handle(&mut self, pkt: &[u8]) -> Vec<Vec<u8>> {
        let reply = self.dispatch(pkt);
        if self.mute {
            return Vec::new();
        }
        match reply {
            Some(r) if self.drop_replies > 0 => {
                self.drop_replies -= 1;
                let _ = r;
                Vec::new()
            }
            Some(r) => {
                self.sent.push(r.clone());
                vec![r]
            }
            None => Vec::new(),
        }
    }

    fn dispatch(&mut self, pkt: &[u8]) -> Option<Vec<u8>> {
        if pkt.len() < 14 || pkt[..4] != [6, 0, 0xff, 7] {
            return None;
        }
        if pkt[4] == 0 {
            // v1.5, Get Channel Authentication Capabilities.
            let m = &pkt[14..];
            assert_eq!(m[5], 0x38);
            assert_eq!(m[6] & 0x80, 0x80, "v2.0 extended data bit");
            let rqseq = m[4];
            let mut r = vec![0x81, 0x07 << 2, 0];
            r[2] = cksum(&r[..2]);
            r.extend([
                0x20,
                rqseq,
                0x38,
                0,
                0x01,
                0x80 | 0x10,
                0x04,
                0x02,
                0,
                0,
                0,
                0,
            ]);
            r.push(cksum(&r[3..]));
            let mut p = vec![6, 0, 0xff, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, r.len() as u8];
            p.extend(r);
            return Some(p);
        }
        let ptype = pkt[5];
        let len = u16::from_le_bytes([pkt[14], pkt[15]]) as usize;
        let payload = pkt.get(16..16 + len)?.to_vec();
        match ptype {
            0x10 => self.open_session(&payload),
            0x12 => self.rakp1(&payload),
            0x14 => self.rakp3(&payload),
            0xc0 => self.in_session(pkt, len),
            _ => None,
        }
    }

    fn open_session(&mut self, p: &[u8]) -> Option<Vec<u8>> {
        let (tag, sidm) = (p[0], le32(&p[4..8]));
        let algs = (p[12], p[20], p[28]);
        let suite = match algs {
            (1, 1, 1) => 3,
            (3, 4, 1) => 17,
            _ => 0,
        };
        if self.silent_suites.contains(&suite) {
            return None;
        }
        if !self.suites.contains(&suite) {
            let body = if self.short_refusal {
                vec![tag, 0x04]
            } else {
                let mut b = vec![tag, 0x11, 0, 0];
                b.extend(sidm.to_le_bytes());
                b
            };
            return Some(Self::rmcpp(0x11, 0, 0, &body));
        }
        self.session = Some(BmcSession {
            sha256: suite == 17,
            sidm,
            rm: Vec::new(),
            role: 0,
            user: Vec::new(),
            k1: Vec::new(),
            k2: Vec::new(),
            active: false,
            out_seq: 0,
        });
        let mut b = vec![tag, 0, 4, 0];
        b.extend(sidm.to_le_bytes());
        b.extend(SIDC.to_le_bytes());
        b.extend([0, 0, 0, 8, algs.0, 0, 0, 0, 1, 0, 0, 8, algs.1, 0, 0, 0]);
        b.extend([2, 0, 0, 8, algs.2, 0, 0, 0]);
        Some(Self::rmcpp(0x11, 0, 0, &b))
    }

    fn rakp1(&mut self, p: &[u8]) -> Option<Vec<u8>> {
        let tag = p[0];
        let s = self.session.as_mut()?;
        if le32(&p[4..8]) != SIDC {
            // Not our session (the client believed a forged Open Session Response, as the
            // fuzz target makes it): RMCP+ status 0x02, invalid session ID, as a BMC answers.
            let mut b = vec![tag, 0x02, 0, 0];
            b.extend(s.sidm.to_le_bytes());
            return Some(Self::rmcpp(0x13, 0, 0, &b));
        }
        s.rm = p[8..24].to_vec();
        s.role = p[24];
        s.user = p[28..28 + p[27] as usize].to_vec();
        if s.user != self.user {
            let mut b = vec![tag, 0x0d, 0, 0];
            b.extend(s.sidm.to_le_bytes());
            return Some(Self::rmcpp(0x13, 0, 0, &b));
        }
        let mut m = s.sidm.to_le_bytes().to_vec();
        m.extend(SIDC.to_le_bytes());
        m.extend(&s.rm);
        m.extend(RC);
        m.extend(GUID);
        m.extend([s.role, s.user.len() as u8]);
        m.extend(&s.user);
        let code = mac(s.sha256, &self.password, &m);
        let mut b = vec![tag, 0, 0, 0];
        b.extend(s.sidm.to_le_bytes());
        b.extend(RC);
        b.extend(GUID);
        b.extend(code);
        Some(Self::rmcpp(0x13, 0, 0, &b))
    }

    fn rakp3(&mut self, p: &[u8]) -> Option<Vec<u8>> {
        let (tag, status) = (p[0], p[1]);
        self.rakp3_status.push(status);
        let s = self.session.as_mut()?;
        if status != 0 {
            self.session = None;
            return None;
        }
        let mut m = RC.to_vec();
        m.extend(s.sidm.to_le_bytes());
        m.extend([s.role, s.user.len() as u8]);
        m.extend(&s.user);
        let mut b = vec![tag, 0, 0, 0];
        b.extend(s.sidm.to_le_bytes());
        if mac(s.sha256, &self.password, &m) != p[8..] {
            b[1] = 0x0f;
            return Some(Self::rmcpp(0x15, 0, 0, &b));
        }
        let mut m = s.rm.clone();
        m.extend(RC);
        m.extend([s.role, s.user.len() as u8]);
        m.extend(&s.user);
        let sik = mac(s.sha256, &self.password, &m);
        s.k1 = mac(s.sha256, &sik, &[1; 20]);
        s.k2 = mac(s.sha256, &sik, &[2; 20]);
        s.active = true;
        self.sessions_opened += 1;
        let mut m = s.rm.clone();
        m.extend(SIDC.to_le_bytes());
        m.extend(GUID);
        let n = if s.sha256 { 16 } else { 12 };
        b.extend(&mac(s.sha256, &sik, &m)[..n]);
        Some(Self::rmcpp(0x15, 0, 0, &b))
    }

    fn in_session(&mut self, pkt: &[u8], len: usize) -> Option<Vec<u8>> {
        let s = self.session.as_mut().filter(|s| s.active)?;
        if le32(&pkt[6..10]) != SIDC {
            return None;
        }
        let n = if s.sha256 { 16 } else { 12 };
        let end = pkt.len() - n;
        assert_eq!(
            mac(s.sha256, &s.k1, &pkt[4..end])[..n],
            pkt[end..],
            "request AuthCode"
        );
        assert_eq!((end - 4) % 4, 0, "integrity pad");
        assert_eq!(pkt[end - 1], 7);
        let msg = cbc(false, &s.k2, &pkt[16..16 + len]);
        assert_eq!(cksum(&msg[..3]), 0);
        assert_eq!(cksum(&msg[3..]), 0);
        let seen = Seen {
            session_seq: le32(&pkt[10..14]),
            rq_seq: msg[4] >> 2,
            netfn: msg[1] >> 2,
            cmd: msg[5],
            data: msg[6..msg.len() - 1].to_vec(),
        };
        self.seen.push(seen.clone());
        let (cc, data) = self.execute(&seen);
        let s = self.session.as_mut()?;
        let mut r = vec![0x81, (seen.netfn | 1) << 2, 0];
        r[2] = cksum(&r[..2]);
        r.extend([0x20, seen.rq_seq << 2, seen.cmd, cc]);
        r.extend(data);
        r.push(cksum(&r[3..]));
        Some(seal(s, &r))
    }

    fn execute(&mut self, q: &Seen) -> (u8, Vec<u8>) {
        match (q.netfn, q.cmd) {
            (6, 0x3b) if q.data[0] & 0x0f > self.max_privilege => (0x81, vec![]),
            (6, 0x3b) => (0, vec![q.data[0]]),
            (6, 0x3c) => {
                assert_eq!(q.data, SIDC.to_le_bytes());
                if let Some(s) = self.session.as_mut() {
                    s.active = false;
                }
                (0, vec![])
            }
            (6, 0x01) => (
                0,
                vec![
                    0x20, 0x81, 0x02, 0x10, 0x02, 0xbf, 0x57, 0x01, 0, 0x34, 0x12,
                ],
            ),
            (0, 0x01) => (0, vec![u8::from(self.power_on) | 0x40, 0x00, 0x00, 0x00]),
            (0, 0x02) => {
                match q.data[0] {
                    0 | 5 => self.power_on = false,
                    1..=3 => self.power_on = true,
                    _ => return (0xcc, vec![]),
                }
                (0, vec![])
            }
            (0, 0x08) => {
                let param = q.data[0];
                if let Some((_, cc)) = self.boot_param_cc.iter().find(|(p, _)| *p == param) {
                    return (*cc, vec![]);
                }
                if param == 5 {
                    self.boot_flags.copy_from_slice(&q.data[1..6]);
                }
                (0, vec![])
            }
            (0, 0x09) => {
                let mut d = vec![1, 5];
                d.extend(self.boot_flags);
                (0, d)
            }
            _ => (0xc1, vec![]),
        }
    }
}

/// Encrypt + integrity-protect an IPMI message as the BMC.
pub fn seal(s: &mut BmcSession, msg: &[u8]) -> Vec<u8> {
    s.out_seq += 1;
    let enc = cbc(true, &s.k2, msg);
    let mut p = FakeBmc::rmcpp(0xc0, s.sidm, s.out_seq, &enc);
    let mut pad = 0u8;
    while (p.len() - 4 + 2) & 3 != 0 {
        p.push(0xff);
        pad += 1;
    }
    p.push(pad);
    p.push(7);
    let n = if s.sha256 { 16 } else { 12 };
    let code = mac(s.sha256, &s.k1, &p[4..]);
    p.extend(&code[..n]);
    p
}

/// AES-CBC-128 with the RMCP+ confidentiality pad; `encrypt` prepends a fixed IV.
fn cbc(encrypt: bool, k2: &[u8], data: &[u8]) -> Vec<u8> {
    let c = aes::Aes128::new(GenericArray::from_slice(&k2[..16]));
    if encrypt {
        let mut plain = data.to_vec();
        let mut i = 1;
        while (plain.len() + 1) & 15 != 0 {
            plain.push(i);
            i += 1;
        }
        plain.push(i - 1);
        let mut out = vec![0x5c; 16];
        for (k, chunk) in plain.chunks(16).enumerate() {
            let mut b = GenericArray::clone_from_slice(chunk);
            for j in 0..16 {
                b[j] ^= out[k * 16 + j];
            }
            c.encrypt_block(&mut b);
            out.extend(b);
        }
        out
    } else {
        let mut out = Vec::new();
        for k in 1..data.len() / 16 {
            let mut b = GenericArray::clone_from_slice(&data[k * 16..k * 16 + 16]);
            c.decrypt_block(&mut b);
            for j in 0..16 {
                out.push(b[j] ^ data[(k - 1) * 16 + j]);
            }
        }
        let pad = *out.last().unwrap() as usize;
        for (i, b) in out[out.len() - 1 - pad..out.len() - 1].iter().enumerate() {
            assert_eq!(*b as usize, i + 1, "confidentiality pad bytes");
        }
        out.truncate(out.len() - 1 - pad);
        out
    }
}

/// Deterministic randomness: an xorshift byte stream.
pub fn det_rng(seed: u8) -> rackboot_ipmi::RandomSource {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    Box::new(move |buf: &mut [u8]| {
        for b in buf {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
    })
}

/// Rewrites each BMC reply into the datagrams actually delivered.
pub type Tamper = Box<dyn FnMut(Vec<u8>) -> Vec<Vec<u8>>>;

pub struct Harness {
    pub client: Client,
    pub bmc: FakeBmc,
    pub t0: Instant,
    pub now: Instant,
    /// Every datagram the client sent.
    pub client_sent: Vec<Vec<u8>>,
    /// Called on each BMC reply before delivery; return the datagrams to deliver instead.
    pub tamper: Option<Tamper>,
}

impl Harness {
    pub fn new(cfg: ClientConfig, bmc: FakeBmc) -> Harness {
        let now = Instant::now();
        Harness {
            client: Client::new(cfg, det_rng(7)).unwrap(),
            bmc,
            t0: now,
            now,
            client_sent: Vec::new(),
            tamper: None,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Run one command to completion on the fake clock.
    pub fn run(&mut self, cmd: Command) -> Result<Response, IpmiError> {
        self.client.start(cmd, self.now)?;
        for _ in 0..1000 {
            while let Some(d) = self.client.poll_transmit() {
                self.client_sent.push(d.clone());
                for r in self.bmc.handle(&d) {
                    let deliver = match self.tamper.as_mut() {
                        Some(t) => t(r),
                        None => vec![r],
                    };
                    for r in deliver {
                        self.client.handle_datagram(&r, self.now);
                    }
                }
            }
            if let Some(r) = self.client.poll_result() {
                return r;
            }
            let t = self
                .client
                .poll_timeout()
                .expect("a deadline while a command runs");
            assert!(t > self.now, "deadline in the past");
            self.now = t;
            self.client.handle_timeout(self.now);
        }
        panic!("command did not finish");
    }
}
