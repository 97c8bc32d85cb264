//! Verification of signed gRPC calls, as Omni does it with go-api-signature (`message.GRPC.
//! VerifySignature`) and its registered service-account public keys.
//!
//! Order of checks (each failure is `Unauthenticated` at the edge):
//! 1. `x-sidero-timestamp` present, a decimal Unix time within ±5 minutes of now;
//! 2. `x-sidero-payload` present and JSON `{"headers":{…},"method":…}`;
//! 3. its `method` equals the called method path;
//! 4. for each of the ten included header keys, its value equals the call's metadata values
//!    for that key: absent/`null` ⇔ no such metadata; an empty array never matches. (Omni reads
//!    the metadata map with the key as spelled, so `fieldSelectors`, having capitals, never
//!    finds a gRPC metadata entry: only `null` verifies there.)
//! 5. `x-sidero-signature` is `siderov1 <name> <fingerprint> <base64 signature>`;
//! 6. the fingerprint is a registered key, not expired, whose identity is `<name>`;
//! 7. the binary detached signature verifies over the exact payload bytes with a
//!    signing-capable key (primary with the sign flag, or a signing subkey), and was not
//!    made in the future (beyond the skew) nor before the key existed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::HeaderMap;
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::KeyDetails as _;

use crate::names::{provider_email, provider_identity, NS_PROVIDER_PRIVATE_PREFIX};

pub const HEADER_TIMESTAMP: &str = "x-sidero-timestamp";
pub const HEADER_PAYLOAD: &str = "x-sidero-payload";
pub const HEADER_SIGNATURE: &str = "x-sidero-signature";

/// The metadata keys whose values the payload must repeat, in go-api-signature's order.
pub const INCLUDED_HEADERS: [&str; 10] = [
    "x-sidero-timestamp",
    "nodes",
    "selectors",
    "fieldSelectors",
    "runtime",
    "context",
    "cluster",
    "namespace",
    "uid",
    "authorization",
];

/// Allowed clock skew for the timestamp.
pub const ALLOWED_SKEW: Duration = Duration::from_secs(5 * 60);

const EMAIL_SUFFIX: &str = "@infra-provider.serviceaccount.omni.sidero.dev";

/// Why a call is not authenticated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("not found: {0}")]
    Missing(&'static str),
    #[error("invalid timestamp")]
    BadTimestamp,
    #[error("timestamp is outside of allowed skew")]
    Skew,
    #[error("invalid payload JSON")]
    BadPayload,
    #[error("payload method does not match: {payload} != {actual}")]
    MethodMismatch { payload: String, actual: String },
    #[error("payload header does not match: {0}")]
    HeaderMismatch(&'static str),
    #[error("invalid signature header")]
    BadSignatureHeader,
    #[error("unsupported signature version")]
    Version,
    #[error("unknown public key")]
    UnknownKey,
    #[error("identity does not match the key")]
    IdentityMismatch,
    #[error("public key expired")]
    Expired,
    #[error("signature verification failed")]
    BadSignature,
}

/// A registered service-account public key.
#[derive(Debug, Clone)]
pub struct RegisteredKey {
    pub fingerprint: String,
    /// `infra-provider:<id>`.
    pub identity: String,
    pub provider_id: String,
    pub expires: Option<SystemTime>,
    pub primary_can_sign: bool,
    key: SignedPublicKey,
}

/// Why a public key cannot be registered.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an armored OpenPGP public key")]
    Parse(#[source] pgp::errors::Error),
    #[error("key self-signatures do not verify")]
    Bindings(#[source] pgp::errors::Error),
    #[error("key has no user id")]
    NoUserId,
    #[error("user id {0:?} is not an infra-provider service account")]
    NotProvider(String),
}

fn latest(sigs: &[Signature]) -> Option<&Signature> {
    sigs.iter()
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
}

fn provider_from_user_id(uid: &str) -> Option<String> {
    let email = match (uid.find('<'), uid.rfind('>')) {
        (Some(a), Some(b)) if a < b => &uid[a + 1..b],
        _ => uid.trim(),
    };
    let id = email.strip_suffix(EMAIL_SUFFIX)?;
    crate::names::is_dns_label(id).then(|| id.to_string())
}

impl RegisteredKey {
    /// Parses an armored public key issued for an infra provider.
    pub fn from_armored(text: &str) -> Result<Self, KeyError> {
        let (key, _) = SignedPublicKey::from_string(text).map_err(KeyError::Parse)?;
        key.verify_bindings().map_err(KeyError::Bindings)?;
        let user = key
            .details
            .users
            .iter()
            .find(|u| u.is_primary())
            .or_else(|| key.details.users.first())
            .ok_or(KeyError::NoUserId)?;
        let uid = String::from_utf8_lossy(user.id.id()).to_string();
        let provider_id = provider_from_user_id(&uid).ok_or(KeyError::NotProvider(uid))?;
        let sig = latest(&user.signatures).ok_or(KeyError::NoUserId)?;
        let created: SystemTime = key.primary_key.created_at().into();
        let expires = sig
            .key_expiration_time()
            .filter(|d| d.as_secs() > 0)
            .map(|d| created + Duration::from(d));
        Ok(RegisteredKey {
            fingerprint: format!("{:x}", key.primary_key.fingerprint()),
            identity: provider_identity(&provider_id),
            primary_can_sign: sig.key_flags().sign(),
            provider_id,
            expires,
            key,
        })
    }

    fn verify(&self, data: &[u8], sig: &Signature, now: SystemTime) -> Result<(), AuthError> {
        if sig.typ() != Some(SignatureType::Binary) {
            return Err(AuthError::BadSignature);
        }
        let made: SystemTime = sig.created().ok_or(AuthError::BadSignature)?.into();
        let key_created: SystemTime = self.key.primary_key.created_at().into();
        if made > now + ALLOWED_SKEW || made < key_created {
            return Err(AuthError::BadSignature);
        }
        if self.primary_can_sign && sig.verify(&self.key.primary_key, data).is_ok() {
            return Ok(());
        }
        for sub in &self.key.public_subkeys {
            let can_sign = latest(&sub.signatures).is_some_and(|s| s.key_flags().sign());
            if can_sign && sig.verify(&sub.key, data).is_ok() {
                return Ok(());
            }
        }
        Err(AuthError::BadSignature)
    }
}

/// The registered keys, by fingerprint.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, RegisteredKey>,
}

/// Who made a verified call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Provider id from the service-account identity.
    pub provider_id: String,
}

#[derive(serde::Deserialize)]
struct Payload {
    #[serde(default)]
    headers: Option<BTreeMap<String, Option<Vec<String>>>>,
    method: String,
}

fn values(headers: &HeaderMap, key: &str) -> Result<Option<Vec<String>>, AuthError> {
    if key.bytes().any(|b| b.is_ascii_uppercase()) {
        return Ok(None);
    }
    let mut out = Vec::new();
    for v in headers.get_all(key) {
        out.push(
            v.to_str()
                .map_err(|_| AuthError::HeaderMismatch(INCLUDED_HEADERS[0]))?
                .to_string(),
        );
    }
    Ok((!out.is_empty()).then_some(out))
}

fn first<'a>(headers: &'a HeaderMap, key: &'static str) -> Result<&'a str, AuthError> {
    match headers.get(key) {
        None => Err(AuthError::Missing(key)),
        Some(v) => v.to_str().map_err(|_| AuthError::Missing(key)),
    }
}

impl KeyRing {
    /// Registers a key (replacing one with the same fingerprint).
    pub fn add(&mut self, key: RegisteredKey) {
        self.keys.insert(key.fingerprint.clone(), key);
    }

    /// The registered keys.
    pub fn keys(&self) -> impl Iterator<Item = &RegisteredKey> {
        self.keys.values()
    }

    /// Verifies a call to `method` carrying `headers`, at time `now`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &str,
        now: SystemTime,
    ) -> Result<Caller, AuthError> {
        let ts: i64 = first(headers, HEADER_TIMESTAMP)?
            .parse()
            .map_err(|_| AuthError::BadTimestamp)?;
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let skew = ALLOWED_SKEW.as_secs() as i64;
        if ts > now_s + skew || ts < now_s - skew {
            return Err(AuthError::Skew);
        }

        let payload_text = first(headers, HEADER_PAYLOAD)?;
        let payload: Payload =
            serde_json::from_str(payload_text).map_err(|_| AuthError::BadPayload)?;
        if payload.method != method {
            return Err(AuthError::MethodMismatch {
                payload: payload.method,
                actual: method.to_string(),
            });
        }
        let sent = payload.headers.unwrap_or_default();
        for key in INCLUDED_HEADERS {
            let in_payload = sent.get(key).cloned().flatten();
            if in_payload != values(headers, key)? {
                return Err(AuthError::HeaderMismatch(key));
            }
        }

        let sig_header = first(headers, HEADER_SIGNATURE)?;
        let parts: Vec<&str> = sig_header.split(' ').collect();
        if parts.len() < 4 {
            return Err(AuthError::BadSignatureHeader);
        }
        if parts[0] != "siderov1" {
            return Err(AuthError::Version);
        }
        let sig_bytes = base64::engine::general_purpose::STANDARD
            .decode(parts[3])
            .map_err(|_| AuthError::BadSignatureHeader)?;
        let key = self.keys.get(parts[2]).ok_or(AuthError::UnknownKey)?;
        let name = parts[1];
        if name != key.identity && name != provider_email(&key.provider_id) {
            return Err(AuthError::IdentityMismatch);
        }
        if key.expires.is_some_and(|e| e <= now) {
            return Err(AuthError::Expired);
        }
        let sig = DetachedSignature::from_bytes(sig_bytes.as_slice())
            .map_err(|_| AuthError::BadSignature)?;
        key.verify(payload_text.as_bytes(), &sig.signature, now)?;
        Ok(Caller {
            provider_id: key.provider_id.clone(),
        })
    }
}

/// Provider id in a private namespace name, if it is one.
pub fn private_namespace_owner(ns: &str) -> Option<&str> {
    ns.strip_prefix(NS_PROVIDER_PRIVATE_PREFIX)
}
