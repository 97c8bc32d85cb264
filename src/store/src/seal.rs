//! Secrets at rest: AES-256-GCM with a 32-byte key kept in `<data-dir>/secret.key` (mode 0600,
//! created on first use). A sealed value is hex(nonce ‖ ciphertext ‖ tag).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot read or create the secret key file {path}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secret key file {path} must hold exactly 32 bytes and be mode 0600")]
    BadKeyFile { path: String },
    #[error("system random number generator failed")]
    Random,
    #[error("sealed value is corrupt or was sealed with another key")]
    Open,
}

pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Load the key at `path`, creating it (0600) if missing.
    pub fn open_or_create(path: &Path) -> Result<Self, SealError> {
        let name = path.display().to_string();
        let io = |source| SealError::KeyFile {
            path: name.clone(),
            source,
        };
        let rng = SystemRandom::new();
        let bytes = if path.exists() {
            let meta = fs::metadata(path).map_err(io)?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(SealError::BadKeyFile { path: name });
            }
            fs::read(path).map_err(io)?
        } else {
            let mut key = [0u8; 32];
            rng.fill(&mut key).map_err(|_| SealError::Random)?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(&key).map_err(io)?;
            f.sync_all().map_err(io)?;
            key.to_vec()
        };
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| SealError::BadKeyFile { path: name })?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            rng,
        })
    }

    pub fn seal(&self, plain: &str) -> Result<String, SealError> {
        if plain.is_empty() {
            return Ok(String::new());
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buf = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .map_err(|_| SealError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(hex::encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        if sealed.is_empty() {
            return Ok(String::new());
        }
        let raw = hex::decode(sealed).map_err(|_| SealError::Open)?;
        if raw.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (n, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(n).map_err(|_| SealError::Open)?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seal_round_trips_and_key_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let s = Sealer::open_or_create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = s.seal("hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, s.seal("hunter2").unwrap(), "fresh nonce each time");
        let again = Sealer::open_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), "hunter2");
        assert!(again.open("00ff").is_err());
    }

    #[test]
    fn a_world_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        fs::write(&path, [7u8; 32]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Sealer::open_or_create(&path),
            Err(SealError::BadKeyFile { .. })
        ));
    }
}
