//! Per-boot agent tokens: what binds an agent to the boot rackboot served.
//!
//! Every time `boot.ipxe` hands a machine the agent, a fresh random token (128 bits, hex) goes
//! onto the agent's kernel command line (`rackboot.token=`). The agent reads it from
//! `/proc/cmdline` and sends it in `Hello`; the agent link accepts an agent for a machine only
//! with the token of that machine's latest agent boot. So an agent on one machine cannot claim
//! another machine's id, UUID or MAC and take over its state (hardware report, wipe results).
//!
//! Only the SHA-256 of a token is kept: in memory from the moment it is issued (the boot path
//! never waits on the store), and in the machine's record once its agent has connected (so a
//! restarted appliance still knows it). Issuing a new token replaces the old one.
//!
//! Limit: boot HTTP is unauthenticated, like every network-boot server: whoever can reach it
//! and knows a machine's UUID or MAC can ask for that machine's boot script, and so for a token
//! (which rotates the real agent's token). See SECURITY.md.

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::sync::Mutex;

/// Tokens issued but not yet stored with a connected agent's machine; keys come from the
/// segment (boot queries), so the map is bounded.
pub const MAX_ISSUED: usize = 65_536;

/// Random bytes fetched from the system generator at a time (a boot storm asks for a token per
/// boot script: one `getrandom` call per 256 tokens instead of one each).
const RANDOM_BATCH: usize = 4096;

/// Tokens issued since this process started (machine id → SHA-256 hex).
pub struct AgentTokens {
    issued: Mutex<HashMap<String, String>>,
    /// System randomness not handed out yet: `bytes[used..]`. Bytes are zeroed as they are taken.
    random: Mutex<RandomPool>,
    rng: SystemRandom,
}

struct RandomPool {
    bytes: Box<[u8; RANDOM_BATCH]>,
    used: usize,
}

impl Default for AgentTokens {
    fn default() -> Self {
        Self {
            issued: Mutex::new(HashMap::new()),
            random: Mutex::new(RandomPool {
                bytes: Box::new([0; RANDOM_BATCH]),
                used: RANDOM_BATCH,
            }),
            rng: SystemRandom::new(),
        }
    }
}

impl std::fmt::Debug for AgentTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentTokens(..)")
    }
}

/// SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    hex_lower(digest(&SHA256, token.as_bytes()).as_ref())
}

/// Lower-case hex, as `hex::encode` gives, without its per-character iterator (two of these
/// per boot script request).
fn hex_lower(bytes: &[u8]) -> String {
    let mut buf = vec![0u8; bytes.len() * 2];
    match hex::encode_to_slice(bytes, &mut buf) {
        Ok(()) => String::from_utf8(buf).unwrap_or_else(|_| hex::encode(bytes)),
        Err(_) => hex::encode(bytes),
    }
}

impl AgentTokens {
    /// A new token for `machine_id`, replacing any earlier one. `None` only if the system's
    /// random number generator fails.
    pub fn issue(&self, machine_id: &str) -> Option<String> {
        let raw = self.random_bytes()?;
        let token = hex_lower(&raw);
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if issued.len() >= MAX_ISSUED && !issued.contains_key(machine_id) {
            // Full of ids from boot queries: forget one (stored tokens still count).
            if let Some(k) = issued.keys().next().cloned() {
                issued.remove(&k);
            }
        }
        issued.insert(machine_id.to_string(), token_hash(&token));
        Some(token)
    }

    /// 16 bytes from the system generator (through [`RandomPool`]).
    fn random_bytes(&self) -> Option<[u8; 16]> {
        let mut pool = self.random.lock().unwrap_or_else(|p| p.into_inner());
        if pool.used + 16 > RANDOM_BATCH {
            self.rng.fill(&mut pool.bytes[..]).ok()?;
            pool.used = 0;
        }
        let at = pool.used;
        let chunk = pool.bytes.get_mut(at..at + 16)?;
        let mut raw = [0u8; 16];
        raw.copy_from_slice(chunk);
        chunk.fill(0);
        pool.used += 16;
        Some(raw)
    }

    /// The hash of the latest token issued for `machine_id` by this process.
    pub fn latest(&self, machine_id: &str) -> Option<String> {
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(machine_id)
            .cloned()
    }

    /// Does `presented` match the latest token of `machine_id` (issued here, else `stored`)?
    /// An empty or missing token never matches. Returns the expected hash when it matches.
    pub fn check(&self, machine_id: &str, stored: Option<&str>, presented: &str) -> Option<String> {
        let expected = self
            .latest(machine_id)
            .or_else(|| stored.map(str::to_string))?;
        if presented.is_empty() {
            return None;
        }
        // Comparing hashes: timing reveals nothing about the token itself.
        (token_hash(presented) == expected).then_some(expected)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hex_is_lower_case_like_the_hex_crate() {
        for bytes in [&[][..], &[0x00, 0x0f, 0xa5, 0xff][..], &[0x12; 32][..]] {
            assert_eq!(hex_lower(bytes), hex::encode(bytes));
        }
        let t = AgentTokens::default().issue("m1").unwrap();
        assert_eq!(t.len(), 32);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn only_the_latest_token_of_the_machine_matches() {
        let t = AgentTokens::default();
        let first = t.issue("m1").unwrap();
        assert_eq!(first.len(), 32);
        assert!(t.check("m1", None, &first).is_some());
        let second = t.issue("m1").unwrap();
        assert_ne!(first, second);
        assert!(t.check("m1", None, &first).is_none(), "replaced");
        assert!(t.check("m1", None, &second).is_some());
        assert!(t.check("m2", None, &second).is_none(), "other machine");
        assert!(t.check("m1", None, "").is_none());
    }

    #[test]
    fn a_stored_hash_counts_when_nothing_was_issued_here() {
        let t = AgentTokens::default();
        let h = token_hash("abc");
        assert!(t.check("m1", Some(&h), "abc").is_some());
        assert!(t.check("m1", Some(&h), "abd").is_none());
        assert!(
            t.check("m1", None, "abc").is_none(),
            "no token known: refused"
        );
        // Issued here beats stored (newer boot).
        let new = t.issue("m1").unwrap();
        assert!(t.check("m1", Some(&h), "abc").is_none());
        assert!(t.check("m1", Some(&h), &new).is_some());
    }

    #[test]
    fn tokens_stay_distinct_across_refills_of_the_random_pool() {
        let t = AgentTokens::default();
        let n = 3 * RANDOM_BATCH / 16 + 5;
        let tokens: std::collections::HashSet<String> =
            (0..n).map(|i| t.issue(&format!("m{i}")).unwrap()).collect();
        assert_eq!(tokens.len(), n);
        assert!(tokens.iter().all(|k| k.len() == 32 && k != &"0".repeat(32)));
        let pool = t.random.lock().unwrap();
        assert!(
            pool.bytes[..pool.used].iter().all(|b| *b == 0),
            "bytes handed out are not kept"
        );
    }

    #[test]
    fn the_map_stays_bounded() {
        let t = AgentTokens::default();
        for i in 0..MAX_ISSUED + 10 {
            t.issue(&format!("m{i}")).unwrap();
        }
        assert!(t.issued.lock().unwrap().len() <= MAX_ISSUED);
    }
}
