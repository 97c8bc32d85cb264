//! Wire formats: RMCP header, IPMI v1.5 and v2.0 (RMCP+) session headers, IPMI LAN message
//! framing with its two checksums. Pure functions; parsing is bounds-checked and never panics.

use crate::error::ParseError;

/// RMCP header: version 1.0 (0x06), reserved, sequence 0xff (no RMCP ACK), class IPMI (0x07).
pub const RMCP_HEADER: [u8; 4] = [0x06, 0x00, 0xff, 0x07];
/// Session auth type "none" (IPMI v1.5 wrapper).
pub const AUTH_NONE: u8 = 0x00;
/// Session auth type "RMCP+" (IPMI v2.0 wrapper).
pub const AUTH_RMCPP: u8 = 0x06;
/// Requester address of a remote console (software ID 0x40 << 1 | 1).
pub const RQ_ADDR: u8 = 0x81;
/// Responder address of the BMC.
pub const RS_ADDR: u8 = 0x20;
/// Offset of the session auth type byte (start of the integrity-protected region).
pub const SESSION_START: usize = 4;
/// Length of the RMCP header plus the IPMI v2.0 session header (without OEM fields).
pub const V20_HEADER_LEN: usize = 16;

/// RMCP+ payload types (IPMI v2.0 table 13-16).
pub mod payload {
    /// An IPMI message.
    pub const IPMI: u8 = 0x00;
    /// OEM explicit (carries an IANA + OEM payload id; not supported).
    pub const OEM_EXPLICIT: u8 = 0x02;
    pub const OPEN_SESSION_REQUEST: u8 = 0x10;
    pub const OPEN_SESSION_RESPONSE: u8 = 0x11;
    pub const RAKP1: u8 = 0x12;
    pub const RAKP2: u8 = 0x13;
    pub const RAKP3: u8 = 0x14;
    pub const RAKP4: u8 = 0x15;
    /// Payload type bit: payload is encrypted.
    pub const ENCRYPTED: u8 = 0x80;
    /// Payload type bit: packet carries an integrity trailer.
    pub const AUTHENTICATED: u8 = 0x40;
}

/// Network function codes (requests; responses are `netfn | 1`).
pub mod netfn {
    pub const CHASSIS: u8 = 0x00;
    pub const APP: u8 = 0x06;
}

/// A parsed IPMI v1.5 session packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V15Packet<'a> {
    pub auth_type: u8,
    pub seq: u32,
    pub session_id: u32,
    /// The IPMI message (not yet checked).
    pub msg: &'a [u8],
}

/// A parsed IPMI v2.0 (RMCP+) session packet; integrity is NOT checked here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V20Packet<'a> {
    pub encrypted: bool,
    pub authenticated: bool,
    /// Payload type without the two flag bits.
    pub payload_type: u8,
    pub session_id: u32,
    pub seq: u32,
    /// The payload as sent (still encrypted if `encrypted`).
    pub payload: &'a [u8],
    /// Bytes after the payload: integrity pad, pad length, next header, AuthCode.
    pub trailer: &'a [u8],
}

/// Either session format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    V15(V15Packet<'a>),
    V20(V20Packet<'a>),
}

/// Bounds-checked slice helper.
pub(crate) fn take(buf: &[u8], start: usize, len: usize) -> Result<&[u8], ParseError> {
    let end = start
        .checked_add(len)
        .ok_or(ParseError::Invalid("length overflow"))?;
    buf.get(start..end).ok_or(ParseError::Truncated {
        needed: end,
        have: buf.len(),
    })
}

pub(crate) fn u32_le(buf: &[u8], at: usize) -> Result<u32, ParseError> {
    let b = take(buf, at, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_le(buf: &[u8], at: usize) -> Result<u16, ParseError> {
    let b = take(buf, at, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn byte(buf: &[u8], at: usize) -> Result<u8, ParseError> {
    Ok(take(buf, at, 1)?[0])
}

/// Parse an RMCP datagram carrying an IPMI v1.5 or v2.0 session packet.
pub fn parse_packet(buf: &[u8]) -> Result<Packet<'_>, ParseError> {
    let rmcp = take(buf, 0, 4)?;
    if rmcp[0] != 0x06 || rmcp[3] & 0x1f != 0x07 {
        return Err(ParseError::NotRmcpIpmi);
    }
    let auth_type = byte(buf, 4)?;
    match auth_type {
        AUTH_RMCPP => {
            let ptype = byte(buf, 5)?;
            let payload_type = ptype & 0x3f;
            if payload_type == payload::OEM_EXPLICIT {
                return Err(ParseError::Invalid("OEM explicit payloads not supported"));
            }
            let session_id = u32_le(buf, 6)?;
            let seq = u32_le(buf, 10)?;
            let len = usize::from(u16_le(buf, 14)?);
            let payload = take(buf, V20_HEADER_LEN, len)?;
            let trailer = &buf[V20_HEADER_LEN + len..];
            Ok(Packet::V20(V20Packet {
                encrypted: ptype & payload::ENCRYPTED != 0,
                authenticated: ptype & payload::AUTHENTICATED != 0,
                payload_type,
                session_id,
                seq,
                payload,
                trailer,
            }))
        }
        0x00..=0x05 => {
            let seq = u32_le(buf, 5)?;
            let session_id = u32_le(buf, 9)?;
            let mut at = 13;
            if auth_type != AUTH_NONE {
                take(buf, at, 16)?;
                at += 16;
            }
            let len = usize::from(byte(buf, at)?);
            let msg = take(buf, at + 1, len)?;
            Ok(Packet::V15(V15Packet {
                auth_type,
                seq,
                session_id,
                msg,
            }))
        }
        other => Err(ParseError::AuthType(other)),
    }
}

/// Encode an IPMI v1.5 packet, auth type none, session 0 (only used before a session exists).
pub fn encode_v15_unauthenticated(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + msg.len());
    out.extend_from_slice(&RMCP_HEADER);
    out.push(AUTH_NONE);
    out.extend_from_slice(&[0; 8]); // session sequence, session id
    out.push(u8::try_from(msg.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(msg);
    out
}

/// Encode the RMCP header + IPMI v2.0 session header (no trailer).
pub fn encode_v20_header(ptype: u8, session_id: u32, seq: u32, payload_len: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&RMCP_HEADER);
    out.push(AUTH_RMCPP);
    out.push(ptype);
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&payload_len.to_le_bytes());
    out
}

/// Encode an unauthenticated, unencrypted v2.0 packet outside a session (Open Session, RAKP).
pub fn encode_v20_plain(payload_type: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = encode_v20_header(payload_type, 0, 0, len);
    out.extend_from_slice(payload);
    out
}

/// Two's-complement checksum: the byte that makes the sum of `bytes` + checksum zero.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// Encode an IPMI LAN request message (rsAddr 0x20, rqAddr 0x81, LUN 0).
pub fn encode_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(7 + data.len());
    m.push(RS_ADDR);
    m.push(netfn << 2);
    m.push(checksum(&m[0..2]));
    m.push(RQ_ADDR);
    m.push((rq_seq & 0x3f) << 2);
    m.push(cmd);
    m.extend_from_slice(data);
    m.push(checksum(&m[3..]));
    m
}

/// A parsed IPMI response message (checksums verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiResponse<'a> {
    /// Response netFn (odd).
    pub netfn: u8,
    pub rq_seq: u8,
    pub cmd: u8,
    pub completion: u8,
    pub data: &'a [u8],
}

/// Parse an IPMI LAN response message, verifying both checksums.
pub fn parse_response(msg: &[u8]) -> Result<IpmiResponse<'_>, ParseError> {
    if msg.len() < 8 {
        return Err(ParseError::Truncated {
            needed: 8,
            have: msg.len(),
        });
    }
    if checksum(&msg[0..3]) != 0 {
        return Err(ParseError::Checksum(1));
    }
    if checksum(&msg[3..]) != 0 {
        return Err(ParseError::Checksum(2));
    }
    Ok(IpmiResponse {
        netfn: msg[1] >> 2,
        rq_seq: msg[4] >> 2,
        cmd: msg[5],
        completion: msg[6],
        data: &msg[7..msg.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_channel_auth_caps_matches_ipmitool() {
        // ipmitool's request, captured (testdata/ipmitool-c3-ipmi_sim.txt, auth_caps_req).
        let msg = encode_request(netfn::APP, 0x38, 0, &[0x8e, 0x04]);
        let pkt = encode_v15_unauthenticated(&msg);
        let want = "0600ff07000000000000000000092018c88100388e04b5";
        let got: String = pkt.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn parse_v15_response() {
        let hex = "0600ff0700000000000000000010811c6320003800019706030000000007";
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        let Ok(Packet::V15(p)) = parse_packet(&bytes) else {
            panic!("not v15")
        };
        let r = parse_response(p.msg).expect("valid");
        assert_eq!((r.netfn, r.cmd, r.completion), (0x07, 0x38, 0));
        assert_eq!(r.data, &[0x01, 0x97, 0x06, 0x03, 0, 0, 0, 0]);
    }

    #[test]
    fn checksum_errors_are_typed() {
        let mut m = encode_request(netfn::APP, 0x01, 1, &[0]);
        m[6] ^= 1;
        assert_eq!(parse_response(&m), Err(ParseError::Checksum(2)));
        m[1] ^= 4;
        assert_eq!(parse_response(&m), Err(ParseError::Checksum(1)));
        assert!(matches!(
            parse_packet(&[6, 0, 0xff]),
            Err(ParseError::Truncated { .. })
        ));
        assert_eq!(
            parse_packet(&[6, 0, 0xff, 7, 9]),
            Err(ParseError::AuthType(9))
        );
    }
}
