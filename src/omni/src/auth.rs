//! Omni service account keys and request signing (omni-wire.md §4).
//!
//! A key is base64 (standard, padded) of `{"name": "infra-provider:<id>", "pgp_key": "<armored
//! Ed25519 OpenPGP private key>"}`. Every call carries `x-sidero-timestamp`, `x-sidero-payload`
//! (the JSON the signature covers) and `x-sidero-signature`
//! (`siderov1 <name> <fingerprint> <base64 binary detached signature>`).
//!
//! The key material never appears in `Debug` output or error messages.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use pgp::composed::{Deserializable, DetachedSignature, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::ser::Serialize as _;
use pgp::types::{KeyDetails as _, Password};
use tonic::metadata::{MetadataMap, MetadataValue};

/// The metadata keys whose values the signed payload lists (in this order upstream; the JSON
/// object is emitted with sorted keys, which the server accepts since it verifies the bytes sent).
pub const SIGNED_HEADERS: [&str; 10] = [
    TIMESTAMP_KEY,
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
pub const TIMESTAMP_KEY: &str = "x-sidero-timestamp";
pub const PAYLOAD_KEY: &str = "x-sidero-payload";
pub const SIGNATURE_KEY: &str = "x-sidero-signature";
/// Prefix of the signature metadata value.
pub const SIGNATURE_VERSION: &str = "siderov1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the Omni service account key is not valid base64")]
    Base64,
    #[error("the Omni service account key is not the expected JSON ({0})")]
    Json(String),
    #[error("the Omni service account key's name {0:?} is not \"infra-provider:<id>\"")]
    Name(String),
    #[error("the Omni service account key's pgp_key is not an armored OpenPGP private key ({0})")]
    Pgp(String),
    #[error("the Omni service account key is {0:?}, not Ed25519 (EdDSA)")]
    Algorithm(String),
    #[error("the Omni service account key is passphrase-protected; Omni issues unencrypted keys")]
    Encrypted,
    #[error("the Omni service account key cannot sign (its primary key lacks the signing flag)")]
    NotSigning,
    #[error(
        "the Omni service account key expired at {0} (Unix seconds); create a new one with omnictl"
    )]
    Expired(u64),
    #[error(
        "the Omni service account key is for provider {key:?}, but provider_id is {configured:?}"
    )]
    ProviderMismatch { key: String, configured: String },
}

#[derive(Debug, thiserror::Error)]
#[error("signing the Omni request failed: {0}")]
pub struct SignError(String);

#[derive(serde::Deserialize)]
struct KeyJson {
    name: String,
    pgp_key: String,
}

/// A loaded, validated service account key.
pub struct ServiceAccountKey {
    name: String,
    provider_id: String,
    key: SignedSecretKey,
    fingerprint: String,
    expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ServiceAccountKey {
    /// Parse and validate a key as `omnictl infraprovider create` prints it; refuses expired,
    /// non-Ed25519, encrypted and non-signing keys.
    pub fn from_base64(text: &str, now: SystemTime) -> Result<Self, KeyError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::Base64)?;
        let json: KeyJson = serde_json::from_slice(&raw).map_err(|e| {
            // serde's message can quote input; keep only the category and position.
            KeyError::Json(format!(
                "{:?} at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let provider_id = json
            .name
            .strip_prefix("infra-provider:")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| KeyError::Name(json.name.clone()))?
            .to_string();
        let (key, _) = SignedSecretKey::from_string(&json.pgp_key)
            .map_err(|e| KeyError::Pgp(e.to_string()))?;
        let algo = key.primary_key.algorithm();
        if !matches!(
            algo,
            PublicKeyAlgorithm::EdDSALegacy | PublicKeyAlgorithm::Ed25519
        ) {
            return Err(KeyError::Algorithm(format!("{algo:?}")));
        }
        if key.primary_key.secret_params().is_encrypted() {
            return Err(KeyError::Encrypted);
        }
        key.verify_bindings()
            .map_err(|e| KeyError::Pgp(format!("self-signature does not verify: {e}")))?;
        let self_sigs = key
            .details
            .users
            .iter()
            .flat_map(|u| u.signatures.iter())
            .chain(key.details.direct_signatures.iter());
        let mut can_sign = false;
        let mut lifetime: Option<Duration> = None;
        for s in self_sigs {
            can_sign |= s.key_flags().sign();
            if let Some(d) = s.key_expiration_time().filter(|d| d.as_secs() != 0) {
                lifetime = Some(Duration::from_secs(u64::from(d.as_secs())));
            }
        }
        if !can_sign {
            return Err(KeyError::NotSigning);
        }
        let created: SystemTime = key.primary_key.created_at().into();
        let expires_at = lifetime.map(|d| created + d);
        if let Some(at) = expires_at {
            if at <= now {
                let secs = at
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                return Err(KeyError::Expired(secs));
            }
        }
        let fingerprint = hex::encode(key.primary_key.fingerprint().as_bytes());
        Ok(Self {
            name: json.name,
            provider_id,
            key,
            fingerprint,
            expires_at,
        })
    }

    /// `infra-provider:<id>`.
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn provider_id(&self) -> &str {
        &self.provider_id
    }
    /// Lowercase hex v4 fingerprint of the primary key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The armored public key (for registering with a test double, or GnuPG).
    pub fn public_key_armored(&self) -> Result<String, SignError> {
        self.key
            .to_public_key()
            .to_armored_string(Default::default())
            .map_err(|e| SignError(e.to_string()))
    }

    /// A binary OpenPGP detached signature over `data`.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        let sig = DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &self.key.primary_key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
        )
        .map_err(|e| SignError(e.to_string()))?;
        sig.to_bytes().map_err(|e| SignError(e.to_string()))
    }

    /// Check that the key belongs to the configured provider.
    pub fn check_provider(&self, configured: &str) -> Result<(), KeyError> {
        if self.provider_id == configured {
            Ok(())
        } else {
            Err(KeyError::ProviderMismatch {
                key: self.provider_id.clone(),
                configured: configured.to_string(),
            })
        }
    }
}

/// The exact payload bytes the signature covers: `{"headers":{...},"method":"..."}` with every
/// signed header as the array of its metadata values, or `null` when absent.
pub fn payload(method: &str, md: &MetadataMap) -> String {
    let mut headers: BTreeMap<&str, Option<Vec<String>>> = BTreeMap::new();
    for key in SIGNED_HEADERS {
        let values: Vec<String> = md
            .get_all(key.to_ascii_lowercase().as_str())
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        headers.insert(
            key,
            if values.is_empty() {
                None
            } else {
                Some(values)
            },
        );
    }
    serde_json::json!({ "headers": headers, "method": method }).to_string()
}

/// Add the three signature entries to `md` for a call of `method` (`/pkg.Service/Method`).
pub fn sign_metadata(
    key: &ServiceAccountKey,
    method: &str,
    md: &mut MetadataMap,
    now: SystemTime,
) -> Result<(), SignError> {
    let ts = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| SignError("the clock is before 1970".into()))?
        .as_secs()
        .to_string();
    md.insert(TIMESTAMP_KEY, ascii(&ts)?);
    let body = payload(method, md);
    let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(body.as_bytes())?);
    md.insert(PAYLOAD_KEY, ascii(&body)?);
    let value = format!("{SIGNATURE_VERSION} {} {} {sig}", key.name, key.fingerprint);
    md.insert(SIGNATURE_KEY, ascii(&value)?);
    Ok(())
}

fn ascii(s: &str) -> Result<MetadataValue<tonic::metadata::Ascii>, SignError> {
    s.parse()
        .map_err(|_| SignError("a signed header is not printable ASCII".into()))
}

/// A tonic interceptor that signs every call; the method comes from the `GrpcMethod` extension
/// tonic's generated clients attach.
#[derive(Clone)]
pub struct Signer {
    key: std::sync::Arc<ServiceAccountKey>,
}

impl Signer {
    pub fn new(key: std::sync::Arc<ServiceAccountKey>) -> Self {
        Self { key }
    }
}

impl tonic::service::Interceptor for Signer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let method = req
            .extensions()
            .get::<tonic::GrpcMethod>()
            .map(|m| format!("/{}/{}", m.service(), m.method()))
            .ok_or_else(|| tonic::Status::internal("unsigned call: gRPC method unknown"))?;
        sign_metadata(&self.key, &method, req.metadata_mut(), SystemTime::now())
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(req)
    }
}
