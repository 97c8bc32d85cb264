//! RMCP+ session-setup payloads (IPMI v2.0 §13.17–13.23): Open Session Request/Response and
//! RAKP messages 1–4. Encoders build payloads; parsers are bounds-checked.

use crate::crypto::CipherSuite;
use crate::error::ParseError;
use crate::wire::{take, u32_le};

/// Open Session Request payload (32 bytes). Privilege 0 = "highest level matching the proposed
/// algorithms", as ipmitool sends.
pub fn open_session_request(tag: u8, max_priv: u8, sidm: u32, suite: &CipherSuite) -> Vec<u8> {
    let mut p = vec![tag, max_priv, 0, 0];
    p.extend_from_slice(&sidm.to_le_bytes());
    for (ptype, algo) in [
        (0u8, suite.auth_algorithm()),
        (1, suite.integrity_algorithm()),
        (2, suite.confidentiality_algorithm()),
    ] {
        p.extend_from_slice(&[ptype, 0, 0, 8, algo, 0, 0, 0]);
    }
    p
}

/// Open Session Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionResponse {
    pub tag: u8,
    pub status: u8,
    pub max_priv: u8,
    pub sidm: u32,
    pub sidc: u32,
    /// Selected (auth, integrity, confidentiality) algorithms; present when status is 0.
    pub algorithms: Option<(u8, u8, u8)>,
}

/// Tag, status and (when present) the session id at offset 4 of an error reply. Error replies
/// may stop after the status byte: ipmi_sim refuses suite 17 with the 2-byte payload `00 04`.
fn error_head(p: &[u8]) -> Result<(u8, u8, u32), ParseError> {
    let head = take(p, 0, 2)?;
    Ok((head[0], head[1], u32_le(p, 4).unwrap_or(0)))
}

/// Parse an Open Session Response payload (error replies may be as short as 2 bytes).
pub fn parse_open_session_response(p: &[u8]) -> Result<OpenSessionResponse, ParseError> {
    let (tag, status, sidm) = error_head(p)?;
    if status != 0 {
        return Ok(OpenSessionResponse {
            tag,
            status,
            max_priv: p.get(2).copied().unwrap_or(0),
            sidm,
            sidc: 0,
            algorithms: None,
        });
    }
    let max_priv = take(p, 2, 1)?[0];
    let sidm = u32_le(p, 4)?;
    let sidc = u32_le(p, 8)?;
    let algs = take(p, 12, 24)?;
    for (i, want_type) in [0u8, 1, 2].iter().enumerate() {
        if algs[i * 8] & 0x3f != *want_type {
            return Err(ParseError::Invalid("open session algorithm payload type"));
        }
    }
    Ok(OpenSessionResponse {
        tag,
        status,
        max_priv,
        sidm,
        sidc,
        algorithms: Some((algs[4] & 0x3f, algs[12] & 0x3f, algs[20] & 0x3f)),
    })
}

/// RAKP message 1 payload.
pub fn rakp1(tag: u8, sidc: u32, rm: &[u8; 16], role: u8, username: &[u8]) -> Vec<u8> {
    let mut p = vec![tag, 0, 0, 0];
    p.extend_from_slice(&sidc.to_le_bytes());
    p.extend_from_slice(rm);
    p.extend_from_slice(&[role, 0, 0, u8::try_from(username.len()).unwrap_or(0)]);
    p.extend_from_slice(username);
    p
}

/// RAKP message 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp2 {
    pub tag: u8,
    pub status: u8,
    pub sidm: u32,
    pub rc: [u8; 16],
    pub guid: [u8; 16],
    /// Key exchange auth code (whatever follows the GUID).
    pub auth_code: Vec<u8>,
}

/// Parse RAKP message 2 (error replies may be as short as 2 bytes).
pub fn parse_rakp2(p: &[u8]) -> Result<Rakp2, ParseError> {
    let (tag, status, sidm) = error_head(p)?;
    let mut r = Rakp2 {
        tag,
        status,
        sidm,
        rc: [0; 16],
        guid: [0; 16],
        auth_code: Vec::new(),
    };
    if r.status == 0 {
        r.sidm = u32_le(p, 4)?;
        r.rc.copy_from_slice(take(p, 8, 16)?);
        r.guid.copy_from_slice(take(p, 24, 16)?);
        r.auth_code = p[40..].to_vec();
    }
    Ok(r)
}

/// RAKP message 3 payload. A non-zero `status` tells the BMC we are abandoning the session.
pub fn rakp3(tag: u8, status: u8, sidc: u32, auth_code: &[u8]) -> Vec<u8> {
    let mut p = vec![tag, status, 0, 0];
    p.extend_from_slice(&sidc.to_le_bytes());
    p.extend_from_slice(auth_code);
    p
}

/// RAKP message 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp4 {
    pub tag: u8,
    pub status: u8,
    pub sidm: u32,
    pub icv: Vec<u8>,
}

/// Parse RAKP message 4 (error replies may be as short as 2 bytes).
pub fn parse_rakp4(p: &[u8]) -> Result<Rakp4, ParseError> {
    let (tag, status, sidm) = error_head(p)?;
    if status != 0 {
        return Ok(Rakp4 {
            tag,
            status,
            sidm,
            icv: Vec::new(),
        });
    }
    Ok(Rakp4 {
        tag,
        status,
        sidm: u32_le(p, 4)?,
        icv: take(p, 8, p.len().saturating_sub(8))?.to_vec(),
    })
}
