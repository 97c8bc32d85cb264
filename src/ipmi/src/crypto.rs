//! RMCP+ cryptography (IPMI v2.0 §13.28–13.32): RAKP key-exchange auth codes, session keys
//! (SIK, K1, K2), integrity AuthCodes and AES-CBC-128 payload confidentiality.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use hmac::{Hmac, Mac};

use crate::error::ParseError;

/// Hash underlying an RAKP authentication or integrity algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    /// Truncated length of the RAKP4 integrity check value and of the session integrity AuthCode
    /// (HMAC-SHA1-96: 12, HMAC-SHA256-128: 16).
    pub fn truncated_len(self) -> usize {
        match self {
            Hash::Sha1 => 12,
            Hash::Sha256 => 16,
        }
    }
    /// Full HMAC output length.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }
}

/// An RMCP+ cipher suite: authentication (RAKP), integrity and confidentiality algorithms.
/// Only suites with AES-CBC-128 confidentiality are offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherSuite {
    /// Suite number as in the IPMI spec (3, 17).
    pub id: u8,
    /// RAKP hash (authentication algorithm 1 = RAKP-HMAC-SHA1, 3 = RAKP-HMAC-SHA256).
    pub auth: Hash,
    /// Integrity hash (algorithm 1 = HMAC-SHA1-96, 4 = HMAC-SHA256-128).
    pub integrity: Hash,
}

impl CipherSuite {
    /// Suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    pub const SUITE_3: CipherSuite = CipherSuite {
        id: 3,
        auth: Hash::Sha1,
        integrity: Hash::Sha1,
    };
    /// Suite 17: RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128.
    pub const SUITE_17: CipherSuite = CipherSuite {
        id: 17,
        auth: Hash::Sha256,
        integrity: Hash::Sha256,
    };
    /// Authentication algorithm number for the Open Session Request.
    pub fn auth_algorithm(&self) -> u8 {
        match self.auth {
            Hash::Sha1 => 0x01,
            Hash::Sha256 => 0x03,
        }
    }
    /// Integrity algorithm number for the Open Session Request.
    pub fn integrity_algorithm(&self) -> u8 {
        match self.integrity {
            Hash::Sha1 => 0x01,
            Hash::Sha256 => 0x04,
        }
    }
    /// Confidentiality algorithm number (AES-CBC-128).
    pub fn confidentiality_algorithm(&self) -> u8 {
        0x01
    }
}

/// HMAC over the concatenation of `parts`.
pub fn hmac(hash: Hash, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        match <M as KeyInit>::new_from_slice(key) {
            Ok(mut mac) => {
                for p in parts {
                    mac.update(p);
                }
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match hash {
        Hash::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        Hash::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
    }
}

/// Constant-time equality (lengths are public).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// K_UID: the user password zero-padded to 20 bytes (IPMI v2.0 passwords are at most 20 bytes).
pub fn kuid(password: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 20];
    let n = password.len().min(20);
    k[..n].copy_from_slice(&password[..n]);
    k
}

/// Everything both RAKP sides know once RAKP message 2 has arrived.
#[derive(Clone, PartialEq, Eq)]
pub struct RakpParams<'a> {
    /// Remote console session ID (ours), as on the wire (little endian).
    pub sidm: u32,
    /// Managed system session ID (the BMC's).
    pub sidc: u32,
    /// Remote console random number.
    pub rm: [u8; 16],
    /// Managed system random number.
    pub rc: [u8; 16],
    /// Managed system GUID.
    pub guid: [u8; 16],
    /// Requested role byte as sent in RAKP1 (privilege | 0x10 name-only lookup).
    pub role: u8,
    /// User name (at most 16 bytes).
    pub username: &'a [u8],
}

impl RakpParams<'_> {
    fn ulen(&self) -> [u8; 1] {
        [u8::try_from(self.username.len()).unwrap_or(u8::MAX)]
    }
}

/// RAKP2 key exchange auth code: HMAC_KUID(SIDm | SIDc | Rm | Rc | GUIDc | RoleM | ULengthM | UNameM).
pub fn rakp2_auth_code(hash: Hash, kuid: &[u8], p: &RakpParams<'_>) -> Vec<u8> {
    let parts: [&[u8]; 8] = [
        &p.sidm.to_le_bytes(),
        &p.sidc.to_le_bytes(),
        &p.rm,
        &p.rc,
        &p.guid,
        &[p.role],
        &p.ulen(),
        p.username,
    ];
    hmac(hash, kuid, &parts)
}

/// RAKP3 key exchange auth code: HMAC_KUID(Rc | SIDm | RoleM | ULengthM | UNameM).
pub fn rakp3_auth_code(hash: Hash, kuid: &[u8], p: &RakpParams<'_>) -> Vec<u8> {
    let parts: [&[u8]; 5] = [
        &p.rc,
        &p.sidm.to_le_bytes(),
        &[p.role],
        &p.ulen(),
        p.username,
    ];
    hmac(hash, kuid, &parts)
}

/// Session integrity key: HMAC_KG(Rm | Rc | RoleM | ULengthM | UNameM); K_G = K_UID when unset.
pub fn sik(hash: Hash, kg: &[u8], p: &RakpParams<'_>) -> Vec<u8> {
    let parts: [&[u8]; 5] = [&p.rm, &p.rc, &[p.role], &p.ulen(), p.username];
    hmac(hash, kg, &parts)
}

/// K1 = HMAC_SIK(0x01 × 20): the integrity key.
pub fn k1(hash: Hash, sik: &[u8]) -> Vec<u8> {
    hmac(hash, sik, &[&[0x01; 20]])
}

/// K2 = HMAC_SIK(0x02 × 20): its first 16 bytes are the AES-CBC-128 key.
pub fn k2(hash: Hash, sik: &[u8]) -> Vec<u8> {
    hmac(hash, sik, &[&[0x02; 20]])
}

/// RAKP4 integrity check value: HMAC_SIK(Rm | SIDc | GUIDc), truncated (12 / 16 bytes).
pub fn rakp4_icv(hash: Hash, sik: &[u8], p: &RakpParams<'_>) -> Vec<u8> {
    let mut v = hmac(hash, sik, &[&p.rm, &p.sidc.to_le_bytes(), &p.guid]);
    v.truncate(hash.truncated_len());
    v
}

/// Session packet AuthCode: HMAC_K1(auth type .. next header), truncated (12 / 16 bytes).
pub fn integrity_code(hash: Hash, k1: &[u8], region: &[u8]) -> Vec<u8> {
    let mut v = hmac(hash, k1, &[region]);
    v.truncate(hash.truncated_len());
    v
}

fn aes_key(k2: &[u8]) -> Option<aes::Aes128> {
    aes::Aes128::new_from_slice(k2.get(..16)?).ok()
}

/// AES-CBC-128 encrypt `plain` for an RMCP+ payload: returns IV | E(plain | 1,2,..,n | n)
/// where n (0..=15) makes the encrypted part a multiple of 16 bytes.
pub fn aes_cbc_encrypt(k2: &[u8], iv: [u8; 16], plain: &[u8]) -> Vec<u8> {
    let Some(cipher) = aes_key(k2) else {
        return Vec::new();
    };
    let pad = (16 - (plain.len() + 1) % 16) % 16;
    let mut data = plain.to_vec();
    data.extend((1..=pad).map(|i| i as u8));
    data.push(pad as u8);
    let mut out = iv.to_vec();
    let mut prev = iv;
    for chunk in data.chunks(16) {
        let mut block = GenericArray::clone_from_slice(chunk);
        for (b, p) in block.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        cipher.encrypt_block(&mut block);
        prev.copy_from_slice(&block);
        out.extend_from_slice(&block);
    }
    out
}

/// Inverse of [`aes_cbc_encrypt`]: strips the IV and the confidentiality pad.
pub fn aes_cbc_decrypt(k2: &[u8], payload: &[u8]) -> Result<Vec<u8>, ParseError> {
    let cipher = aes_key(k2).ok_or(ParseError::Invalid("AES key"))?;
    if payload.len() < 32 || payload.len() & 0x0f != 0 {
        return Err(ParseError::Invalid("encrypted payload length"));
    }
    let (iv, body) = payload.split_at(16);
    let mut prev = GenericArray::clone_from_slice(iv);
    let mut out = Vec::with_capacity(body.len());
    for chunk in body.chunks(16) {
        let ct = GenericArray::clone_from_slice(chunk);
        let mut block = ct;
        cipher.decrypt_block(&mut block);
        for (b, p) in block.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        out.extend_from_slice(&block);
        prev = ct;
    }
    let pad = usize::from(*out.last().ok_or(ParseError::Invalid("empty"))?);
    if pad > 15 || pad + 1 > out.len() {
        return Err(ParseError::Invalid("confidentiality pad length"));
    }
    out.truncate(out.len() - pad - 1);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_round_trip_all_lengths() {
        let k2 = [7u8; 20];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let enc = aes_cbc_encrypt(&k2, [9; 16], &plain);
            assert_eq!(enc.len() % 16, 0);
            assert_eq!(aes_cbc_decrypt(&k2, &enc), Ok(plain));
        }
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
