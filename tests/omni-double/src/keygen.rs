//! Service-account keys exactly as Omni issues them to an infrastructure provider
//! (`omnictl infraprovider create <id>`; go-api-signature `pgp.GenerateKey`):
//! an unencrypted v4 OpenPGP key with an EdDSA (legacy Ed25519) primary that can certify and
//! sign, an ECDH Curve25519 encryption subkey, one user id `<id>@infra-provider.serviceaccount.
//! omni.sidero.dev` whose self-signature carries a key expiration time, and the service-account
//! key text: standard padded base64 of `{"name":"infra-provider:<id>","pgp_key":"<armored>"}`.
//!
//! Test variants: `expired` (created two days ago, lifetime one day) and `no_sign` (primary
//! without the signing flag), so a client's refusals can be exercised.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use pgp::composed::{
    ArmorOptions, EncryptionCaps, KeyType, SecretKeyParamsBuilder, SignedSecretKey,
    SubkeyParamsBuilder,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{
    Features, KeyFlags, PacketTrait, SignatureConfig, SignatureType, Subpacket, SubpacketData,
};
use pgp::types::{CompressionAlgorithm, KeyDetails as _, Password, Timestamp};

use crate::names::{is_dns_label, provider_email, provider_identity};

/// Default key lifetime: one year (Omni's default TTL for infra-provider keys).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// What kind of key to make.
#[derive(Debug, Clone)]
pub struct KeyOptions {
    pub provider_id: String,
    pub lifetime: Duration,
    pub expired: bool,
    pub sign: bool,
}

impl KeyOptions {
    /// A normal, valid key for `provider_id`.
    pub fn new(provider_id: &str) -> Self {
        KeyOptions {
            provider_id: provider_id.to_string(),
            lifetime: DEFAULT_LIFETIME,
            expired: false,
            sign: true,
        }
    }
}

/// A generated key: the service-account key text (secret) and its public half.
#[derive(Clone)]
pub struct GeneratedKey {
    /// base64 JSON `{"name","pgp_key"}`: what `OMNI_SERVICE_ACCOUNT_KEY` holds.
    pub service_account_key: String,
    /// ASCII-armored private key (also inside `service_account_key`).
    pub private_armored: String,
    /// ASCII-armored public key: what the double registers.
    pub public_armored: String,
    /// Lowercase hex v4 fingerprint of the primary key.
    pub fingerprint: String,
    /// `infra-provider:<id>`.
    pub name: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("provider id {0:?} is not a DNS-1123 label")]
    BadId(String),
    #[error("lifetime out of range")]
    Lifetime,
    #[error("OpenPGP")]
    Pgp(#[source] pgp::errors::Error),
    #[error("key parameters: {0}")]
    Params(String),
    #[error("JSON")]
    Json(#[source] serde_json::Error),
}

fn secs(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
        .unwrap_or(0)
}

/// Generates a key as described in the module doc, at time `now`.
pub fn generate(opts: &KeyOptions, now: SystemTime) -> Result<GeneratedKey, KeygenError> {
    if !is_dns_label(&opts.provider_id) {
        return Err(KeygenError::BadId(opts.provider_id.clone()));
    }
    let (created, lifetime) = if opts.expired {
        (now - Duration::from_secs(2 * 24 * 3600), 24 * 3600u32)
    } else {
        let l = u32::try_from(opts.lifetime.as_secs()).map_err(|_| KeygenError::Lifetime)?;
        (now, l)
    };
    if lifetime == 0 {
        return Err(KeygenError::Lifetime);
    }
    let created = Timestamp::from_secs(secs(created));
    let email = provider_email(&opts.provider_id);
    let mut rng = rand::thread_rng();

    let mut enc = SubkeyParamsBuilder::default();
    enc.key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
        .can_encrypt(EncryptionCaps::All)
        .created_at(created);
    let enc = enc
        .build()
        .map_err(|e| KeygenError::Params(e.to_string()))?;

    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(opts.sign)
        .created_at(created)
        .primary_user_id(email.clone())
        .preferred_hash_algorithms([HashAlgorithm::Sha256].into_iter().collect())
        .preferred_symmetric_algorithms([SymmetricKeyAlgorithm::AES256].into_iter().collect())
        .preferred_compression_algorithms([CompressionAlgorithm::ZLIB].into_iter().collect())
        .subkey(enc);
    let params = params
        .build()
        .map_err(|e| KeygenError::Params(e.to_string()))?;
    let mut key = params.generate(&mut rng).map_err(KeygenError::Pgp)?;
    add_expiry(&mut key, created, lifetime, opts.sign)?;

    let private_armored = key
        .to_armored_string(ArmorOptions::default())
        .map_err(KeygenError::Pgp)?;
    let public_armored = key
        .to_public_key()
        .to_armored_string(ArmorOptions::default())
        .map_err(KeygenError::Pgp)?;
    let name = provider_identity(&opts.provider_id);
    let json = serde_json::json!({ "name": name, "pgp_key": private_armored });
    let json = serde_json::to_vec(&json).map_err(KeygenError::Json)?;
    Ok(GeneratedKey {
        service_account_key: base64::engine::general_purpose::STANDARD.encode(json),
        private_armored,
        public_armored,
        fingerprint: format!("{:x}", key.primary_key.fingerprint()),
        name,
    })
}

/// Re-issues the primary user id's self-signature with a key expiration time (rpgp's builder
/// has no expiry option), as Go's `openpgp.NewEntity` does with `KeyLifetimeSecs`.
fn add_expiry(
    key: &mut SignedSecretKey,
    created: Timestamp,
    lifetime: u32,
    sign: bool,
) -> Result<(), KeygenError> {
    let mut rng = rand::thread_rng();
    let mut flags = KeyFlags::default();
    flags.set_certify(true);
    flags.set_sign(sign);
    let mut features = Features::default();
    features.set_seipd_v1(true);
    let primary = &key.primary_key;
    let mut cfg = SignatureConfig::from_key(&mut rng, primary, SignatureType::CertPositive)
        .map_err(KeygenError::Pgp)?;
    let sp = |d| Subpacket::regular(d).map_err(KeygenError::Pgp);
    cfg.hashed_subpackets = vec![
        sp(SubpacketData::SignatureCreationTime(created))?,
        sp(SubpacketData::IssuerFingerprint(primary.fingerprint()))?,
        sp(SubpacketData::KeyFlags(flags))?,
        sp(SubpacketData::KeyExpirationTime(
            pgp::types::Duration::from_secs(lifetime),
        ))?,
        sp(SubpacketData::Features(features))?,
        sp(SubpacketData::PreferredHashAlgorithms(
            [HashAlgorithm::Sha256].into_iter().collect(),
        ))?,
        sp(SubpacketData::IsPrimary(true))?,
    ];
    cfg.unhashed_subpackets = vec![sp(SubpacketData::IssuerKeyId(primary.legacy_key_id()))?];
    let user = key
        .details
        .users
        .first_mut()
        .ok_or_else(|| KeygenError::Params("no user id".into()))?;
    let sig = cfg
        .sign_certification(
            primary,
            primary.public_key(),
            &Password::empty(),
            user.id.tag(),
            &user.id,
        )
        .map_err(KeygenError::Pgp)?;
    user.signatures = vec![sig];
    Ok(())
}
