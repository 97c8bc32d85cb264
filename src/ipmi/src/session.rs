//! Session establishment state machine (Get Channel Authentication Capabilities → Open Session
//! → RAKP 1/2 → RAKP 3/4) and the established session ([`Active`]) that seals and opens
//! authenticated + encrypted packets with session sequence numbers.

use crate::crypto::{self, CipherSuite, RakpParams};
use crate::error::{rmcpp_status_meaning, IpmiError, ParseError};
use crate::rakp;
use crate::window::SeqWindow;
use crate::wire::{self, netfn, payload, Packet, SESSION_START, V20_HEADER_LEN};

/// Why a received datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Malformed(ParseError),
    WrongSessionId,
    OutOfWindow,
    BadIntegrity,
    /// Well-formed but not an answer to what is outstanding (stale, duplicate, wrong tag/rqSeq),
    /// or missing the negotiated protection.
    Unexpected,
}

impl From<ParseError> for DropReason {
    fn from(e: ParseError) -> Self {
        DropReason::Malformed(e)
    }
}

/// Randomness source (must be cryptographically secure in production).
pub type Rng<'a> = &'a mut dyn FnMut(&mut [u8]);

/// Credentials and options the handshake needs.
pub(crate) struct HsCtx<'a> {
    pub username: &'a [u8],
    pub kuid: [u8; 20],
    /// Requested privilege level (1..=4).
    pub privilege: u8,
    pub suites: &'a [CipherSuite],
}

impl HsCtx<'_> {
    /// RoleM: privilege with the "name-only lookup" bit, as ipmitool sends.
    fn role(&self) -> u8 {
        self.privilege | 0x10
    }
}

/// Handshake state (each state holds what the next message needs).
#[derive(Debug)]
pub(crate) enum Handshake {
    /// Waiting for Get Channel Authentication Capabilities.
    AuthCaps { rq_seq: u8 },
    /// Waiting for the Open Session Response for `suites[suite_idx]`.
    OpenSession {
        suite_idx: usize,
        sidm: u32,
        tag: u8,
        refusals: Vec<String>,
    },
    /// Waiting for RAKP message 2.
    Rakp1 {
        suite: CipherSuite,
        sidm: u32,
        sidc: u32,
        rm: [u8; 16],
        tag: u8,
    },
    /// Waiting for RAKP message 4.
    Rakp3 {
        suite: CipherSuite,
        sidm: u32,
        sidc: u32,
        rm: [u8; 16],
        guid: [u8; 16],
        sik: Vec<u8>,
        tag: u8,
    },
}

/// What a handshake step produced.
pub(crate) enum HsOutcome {
    /// A new exchange: send this packet (with fresh retries).
    Send(Vec<u8>),
    Established(Box<Active>),
    /// Failed; optionally send a last packet (RAKP3 with an error status) without waiting.
    Failed(IpmiError, Option<Vec<u8>>),
    Drop(DropReason),
}

fn random_u32_nonzero(rng: Rng<'_>) -> u32 {
    let mut b = [0u8; 4];
    loop {
        rng(&mut b);
        let v = u32::from_le_bytes(b);
        if v != 0 {
            return v;
        }
    }
}

/// Map a non-zero RAKP status to an error: name/role/integrity refusals are credential problems.
fn rakp_status_error(stage: &str, status: u8) -> IpmiError {
    let meaning = rmcpp_status_meaning(status);
    match status {
        0x09 | 0x0a | 0x0c | 0x0d | 0x0e | 0x0f => IpmiError::AuthFailed(format!(
            "{stage}: BMC says {meaning} (status {status:#04x})"
        )),
        _ => IpmiError::SessionRejected { status, meaning },
    }
}

/// Accept only session-setup payloads of `want` type, sent outside a session.
fn setup_payload(buf: &[u8], want: u8) -> Result<&[u8], DropReason> {
    match wire::parse_packet(buf)? {
        Packet::V20(p) if p.payload_type == want && !p.encrypted && !p.authenticated => {
            Ok(p.payload)
        }
        _ => Err(DropReason::Unexpected),
    }
}

impl Handshake {
    /// Begin: Get Channel Authentication Capabilities (IPMI v1.5 wrapper, v2.0 data bit set).
    pub fn start(rq_seq: u8, privilege: u8) -> (Handshake, Vec<u8>) {
        let msg = wire::encode_request(netfn::APP, 0x38, rq_seq, &[0x8e, privilege]);
        (
            Handshake::AuthCaps { rq_seq },
            wire::encode_v15_unauthenticated(&msg),
        )
    }

    /// Propose `ctx.suites[suite_idx]` (or fail when the list is exhausted).
    fn try_suite(
        &mut self,
        suite_idx: usize,
        refusals: Vec<String>,
        tag: u8,
        ctx: &HsCtx<'_>,
        rng: Rng<'_>,
    ) -> HsOutcome {
        let Some(suite) = ctx.suites.get(suite_idx) else {
            let msg = if refusals.is_empty() {
                "no cipher suites configured".to_string()
            } else {
                refusals.join("; ")
            };
            return HsOutcome::Failed(IpmiError::NoCipherSuite(msg), None);
        };
        let sidm = random_u32_nonzero(rng);
        let p = rakp::open_session_request(tag, 0, sidm, suite);
        *self = Handshake::OpenSession {
            suite_idx,
            sidm,
            tag,
            refusals,
        };
        HsOutcome::Send(wire::encode_v20_plain(payload::OPEN_SESSION_REQUEST, &p))
    }

    /// Retries of the current step are exhausted. During Open Session this falls back to the
    /// next cipher suite; otherwise it returns `None` (the caller reports a timeout).
    pub fn on_exhausted(&mut self, ctx: &HsCtx<'_>, rng: Rng<'_>) -> Option<HsOutcome> {
        if let Handshake::OpenSession {
            suite_idx,
            tag,
            refusals,
            ..
        } = self
        {
            let mut refusals = std::mem::take(refusals);
            let id = ctx.suites.get(*suite_idx).map_or(0, |s| s.id);
            refusals.push(format!("suite {id}: no reply"));
            let (next, tag) = (*suite_idx + 1, tag.wrapping_add(1));
            return Some(self.try_suite(next, refusals, tag, ctx, rng));
        }
        None
    }

    /// Name of the step in progress (for timeout messages).
    pub fn step_name(&self) -> &'static str {
        match self {
            Handshake::AuthCaps { .. } => "Get Channel Authentication Capabilities",
            Handshake::OpenSession { .. } => "Open Session Request",
            Handshake::Rakp1 { .. } => "RAKP message 1",
            Handshake::Rakp3 { .. } => "RAKP message 3",
        }
    }

    /// Handle a datagram received while the handshake is in progress.
    pub fn handle(&mut self, buf: &[u8], ctx: &HsCtx<'_>, rng: Rng<'_>) -> HsOutcome {
        match self.step(buf, ctx, rng) {
            Ok(o) => o,
            Err(d) => HsOutcome::Drop(d),
        }
    }

    fn step(&mut self, buf: &[u8], ctx: &HsCtx<'_>, rng: Rng<'_>) -> Result<HsOutcome, DropReason> {
        match self {
            Handshake::AuthCaps { rq_seq } => {
                let Packet::V15(p) = wire::parse_packet(buf)? else {
                    return Err(DropReason::Unexpected);
                };
                let r = wire::parse_response(p.msg)?;
                if r.netfn != netfn::APP + 1 || r.cmd != 0x38 || r.rq_seq != *rq_seq {
                    return Err(DropReason::Unexpected);
                }
                // data: channel, auth type support (bit 7: extended data), auth status,
                // extended capabilities (bit 1: IPMI v2.0 connections supported).
                let d = r.data;
                if r.completion == 0 && d.len() >= 4 && d[1] & 0x80 != 0 && d[3] & 0x02 == 0 {
                    return Ok(HsOutcome::Failed(IpmiError::NotIpmi20, None));
                }
                Ok(self.try_suite(0, Vec::new(), 0, ctx, rng))
            }
            Handshake::OpenSession {
                suite_idx,
                sidm,
                tag,
                refusals,
            } => {
                let p = setup_payload(buf, payload::OPEN_SESSION_RESPONSE)?;
                let r = rakp::parse_open_session_response(p)?;
                if r.tag != *tag || (r.sidm != *sidm && !(r.status != 0 && r.sidm == 0)) {
                    return Err(DropReason::Unexpected);
                }
                let proposed = *ctx.suites.get(*suite_idx).ok_or(DropReason::Unexpected)?;
                // A BMC must select the proposed algorithms, but pyghmi's BMC always answers
                // with suite 3's. Adopt the selection if it is another configured suite.
                let selected = ctx.suites.iter().find(|s| {
                    r.algorithms
                        == Some((
                            s.auth_algorithm(),
                            s.integrity_algorithm(),
                            s.confidentiality_algorithm(),
                        ))
                });
                let suite = selected.copied().unwrap_or(proposed);
                let refusal = if r.status != 0 {
                    Some(rmcpp_status_meaning(r.status).to_string())
                } else if selected.is_none() {
                    Some(format!("BMC selected other algorithms {:?}", r.algorithms))
                } else if r.sidc == 0 {
                    Some("BMC session id 0".to_string())
                } else {
                    None
                };
                if let Some(why) = refusal {
                    let mut refusals = std::mem::take(refusals);
                    refusals.push(format!("suite {}: {why}", proposed.id));
                    let (next, tag) = (*suite_idx + 1, tag.wrapping_add(1));
                    return Ok(self.try_suite(next, refusals, tag, ctx, rng));
                }
                let mut rm = [0u8; 16];
                rng(&mut rm);
                let tag = tag.wrapping_add(1);
                let p = rakp::rakp1(tag, r.sidc, &rm, ctx.role(), ctx.username);
                *self = Handshake::Rakp1 {
                    suite,
                    sidm: *sidm,
                    sidc: r.sidc,
                    rm,
                    tag,
                };
                Ok(HsOutcome::Send(wire::encode_v20_plain(payload::RAKP1, &p)))
            }
            Handshake::Rakp1 {
                suite,
                sidm,
                sidc,
                rm,
                tag,
            } => {
                let r = rakp::parse_rakp2(setup_payload(buf, payload::RAKP2)?)?;
                if r.tag != *tag || (r.status == 0 && r.sidm != *sidm) {
                    return Err(DropReason::Unexpected);
                }
                if r.status != 0 {
                    return Ok(HsOutcome::Failed(
                        rakp_status_error("RAKP2", r.status),
                        None,
                    ));
                }
                let params = RakpParams {
                    sidm: *sidm,
                    sidc: *sidc,
                    rm: *rm,
                    rc: r.rc,
                    guid: r.guid,
                    role: ctx.role(),
                    username: ctx.username,
                };
                let hash = suite.auth;
                let tag = tag.wrapping_add(1);
                let expect = crypto::rakp2_auth_code(hash, &ctx.kuid, &params);
                if !crypto::ct_eq(&expect, &r.auth_code) {
                    // Tell the BMC to drop its half-open session (as ipmitool does).
                    let p = rakp::rakp3(tag, 0x0f, *sidc, &[]);
                    let err = IpmiError::AuthFailed("RAKP2 key exchange auth code mismatch".into());
                    let pkt = wire::encode_v20_plain(payload::RAKP3, &p);
                    return Ok(HsOutcome::Failed(err, Some(pkt)));
                }
                let sik = crypto::sik(hash, &ctx.kuid, &params);
                let code = crypto::rakp3_auth_code(hash, &ctx.kuid, &params);
                let p = rakp::rakp3(tag, 0, *sidc, &code);
                *self = Handshake::Rakp3 {
                    suite: *suite,
                    sidm: *sidm,
                    sidc: *sidc,
                    rm: *rm,
                    guid: r.guid,
                    sik,
                    tag,
                };
                Ok(HsOutcome::Send(wire::encode_v20_plain(payload::RAKP3, &p)))
            }
            Handshake::Rakp3 {
                suite,
                sidm,
                sidc,
                rm,
                guid,
                sik,
                tag,
            } => {
                let r = rakp::parse_rakp4(setup_payload(buf, payload::RAKP4)?)?;
                if r.tag != *tag || (r.status == 0 && r.sidm != *sidm) {
                    return Err(DropReason::Unexpected);
                }
                if r.status != 0 {
                    return Ok(HsOutcome::Failed(
                        rakp_status_error("RAKP4", r.status),
                        None,
                    ));
                }
                let params = RakpParams {
                    sidm: *sidm,
                    sidc: *sidc,
                    rm: *rm,
                    rc: [0; 16],
                    guid: *guid,
                    role: ctx.role(),
                    username: ctx.username,
                };
                let expect = crypto::rakp4_icv(suite.auth, sik, &params);
                if !crypto::ct_eq(&expect, &r.icv) {
                    let err = IpmiError::AuthFailed("RAKP4 integrity check value mismatch".into());
                    return Ok(HsOutcome::Failed(err, None));
                }
                Ok(HsOutcome::Established(Box::new(Active::new(
                    *suite, *sidm, *sidc, sik,
                ))))
            }
        }
    }
}

/// An established RMCP+ session.
pub(crate) struct Active {
    pub suite: CipherSuite,
    pub sidm: u32,
    pub sidc: u32,
    k1: Vec<u8>,
    k2: Vec<u8>,
    out_seq: u32,
    window: SeqWindow,
    /// Set Session Privilege Level has succeeded.
    pub privileged: bool,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active")
            .field("suite", &self.suite.id)
            .field("sidm", &format_args!("{:#010x}", self.sidm))
            .field("sidc", &format_args!("{:#010x}", self.sidc))
            .field("out_seq", &self.out_seq)
            .finish_non_exhaustive()
    }
}

impl Active {
    pub fn new(suite: CipherSuite, sidm: u32, sidc: u32, sik: &[u8]) -> Active {
        Active {
            suite,
            sidm,
            sidc,
            k1: crypto::k1(suite.auth, sik),
            k2: crypto::k2(suite.auth, sik),
            out_seq: 0,
            window: SeqWindow::default(),
            privileged: false,
        }
    }

    /// Wrap an IPMI message: encrypt, add integrity pad/trailer and AuthCode; takes the next
    /// session sequence number (every transmission, including retransmits, gets a new one).
    pub fn seal(&mut self, msg: &[u8], rng: Rng<'_>) -> Vec<u8> {
        self.out_seq = self.out_seq.wrapping_add(1).max(1);
        let mut iv = [0u8; 16];
        rng(&mut iv);
        let enc = crypto::aes_cbc_encrypt(&self.k2, iv, msg);
        let ptype = payload::ENCRYPTED | payload::AUTHENTICATED | payload::IPMI;
        let len = u16::try_from(enc.len()).unwrap_or(u16::MAX);
        let mut pkt = wire::encode_v20_header(ptype, self.sidc, self.out_seq, len);
        pkt.extend_from_slice(&enc);
        let pad = (4 - (pkt.len() - SESSION_START + 2) % 4) % 4;
        pkt.extend(std::iter::repeat_n(0xff, pad));
        pkt.push(pad as u8);
        pkt.push(0x07);
        let code = crypto::integrity_code(self.suite.integrity, &self.k1, &pkt[SESSION_START..]);
        pkt.extend_from_slice(&code);
        pkt
    }

    /// Verify and decrypt an in-session packet; returns the IPMI message.
    pub fn open(&mut self, buf: &[u8]) -> Result<Vec<u8>, DropReason> {
        let Packet::V20(p) = wire::parse_packet(buf)? else {
            return Err(DropReason::Unexpected);
        };
        if p.payload_type != payload::IPMI {
            return Err(DropReason::Unexpected);
        }
        if p.session_id != self.sidm {
            return Err(DropReason::WrongSessionId);
        }
        if !p.authenticated || !p.encrypted {
            return Err(DropReason::Unexpected);
        }
        let n = self.suite.integrity.truncated_len();
        let auth_end = buf.len().saturating_sub(n);
        if p.trailer.len() < n + 2 {
            return Err(ParseError::Invalid("integrity trailer").into());
        }
        let expect = crypto::integrity_code(
            self.suite.integrity,
            &self.k1,
            &buf[SESSION_START..auth_end],
        );
        if !crypto::ct_eq(&expect, &buf[auth_end..]) {
            return Err(DropReason::BadIntegrity);
        }
        let pad = usize::from(buf[auth_end - 2]);
        if buf[auth_end - 1] != 0x07 || V20_HEADER_LEN + p.payload.len() + pad + 2 != auth_end {
            return Err(ParseError::Invalid("integrity pad / next header").into());
        }
        if !self.window.accept(p.seq) {
            return Err(DropReason::OutOfWindow);
        }
        Ok(crypto::aes_cbc_decrypt(&self.k2, p.payload)?)
    }

    /// K1 and K2 (known-answer tests).
    #[cfg(test)]
    pub fn keys(&self) -> (&[u8], &[u8]) {
        (&self.k1, &self.k2)
    }

    /// Make the next `seal` use `seq + 1` (known-answer tests).
    #[cfg(test)]
    pub fn set_out_seq_for_test(&mut self, seq: u32) {
        self.out_seq = seq;
    }
}
