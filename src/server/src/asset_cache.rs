//! Remote boot assets (a profile's kernel/initrd given by `http(s)://` URL), fetched once into a
//! content-addressed cache in the data dir and served from the appliance, so racks boot at LAN
//! speed and keep booting when the upstream is unreachable (air-gapped after the first fetch).
//!
//! Layout: `<cache>/sha256/<hex>` holds the bytes; `<cache>/urls/<sha256(url)>` holds the hex of
//! the content fetched for that URL. Machines fetch `GET /cache/<sha256(url)>`. Concurrent first
//! requests for one URL share a single fetch; an expected SHA-256 that does not match refuses
//! the file and caches nothing. The index survives restarts.

use ring::digest::{Context, SHA256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Upper bound on one cached file.
const MAX_ASSET: u64 = 4 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CacheError {
    #[error("fetching {url} failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url}: SHA-256 {got} does not match the expected {want}; not cached")]
    Checksum {
        url: String,
        got: String,
        want: String,
    },
    #[error("cache I/O: {0}")]
    Io(String),
    #[error("unknown cache key")]
    UnknownKey,
}

/// One fetch in flight: its result (the content hash), shared by every waiter.
type Fetch = OnceCell<Result<String, CacheError>>;

pub struct AssetCache {
    dir: PathBuf,
    agent: ureq::Agent,
    /// Single-flight: one fetch per URL key at a time.
    inflight: Mutex<HashMap<String, Arc<Fetch>>>,
    /// URL key → URL, for keys rendered into scripts (so `/cache/<key>` can fetch on demand).
    known: Mutex<HashMap<String, (String, Option<String>)>>,
}

pub fn hex_sha256(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&SHA256, data).as_ref())
}

/// The cache key of a URL (what machines request).
pub fn url_key(url: &str) -> String {
    hex_sha256(url.as_bytes())
}

impl AssetCache {
    pub fn new(dir: PathBuf) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(60))
            .build();
        Self {
            dir,
            agent,
            inflight: Mutex::default(),
            known: Mutex::default(),
        }
    }

    pub fn content_dir(&self) -> PathBuf {
        self.dir.join("sha256")
    }

    /// Remember a URL (and its expected hash) so `/cache/<key>` can serve it; returns the key.
    pub fn register(&self, url: &str, sha256: Option<&str>) -> String {
        let key = url_key(url);
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(
            key.clone(),
            (url.to_string(), sha256.map(str::to_ascii_lowercase)),
        );
        key
    }

    /// Content hash of a cached URL key, if it is on disk.
    fn indexed(&self, key: &str) -> Option<String> {
        let hash = std::fs::read_to_string(self.dir.join("urls").join(key)).ok()?;
        let hash = hash.trim().to_string();
        self.content_dir().join(&hash).is_file().then_some(hash)
    }

    /// Make sure the file for `key` is cached (fetching it once); returns its content hash.
    pub async fn ensure(&self, key: &str) -> Result<String, CacheError> {
        if let Some(h) = self.indexed(key) {
            return Ok(h);
        }
        let (url, want) = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
            .ok_or(CacheError::UnknownKey)?;
        let cell = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        let result = cell
            .get_or_init(|| async {
                let (dir, agent, key) = (self.dir.clone(), self.agent.clone(), key.to_string());
                tokio::task::spawn_blocking(move || {
                    fetch(&agent, &dir, &key, &url, want.as_deref())
                })
                .await
                .unwrap_or_else(|e| Err(CacheError::Io(e.to_string())))
            })
            .await
            .clone();
        // A failure is not remembered: the next request tries again.
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        result
    }
}

fn fetch(
    agent: &ureq::Agent,
    dir: &Path,
    key: &str,
    url: &str,
    want: Option<&str>,
) -> Result<String, CacheError> {
    let io = |e: std::io::Error| CacheError::Io(e.to_string());
    let fail = |reason: String| CacheError::Fetch {
        url: url.to_string(),
        reason,
    };
    std::fs::create_dir_all(dir.join("sha256")).map_err(io)?;
    std::fs::create_dir_all(dir.join("urls")).map_err(io)?;
    let resp = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let tmp = dir.join(format!("tmp-{key}"));
    let mut out = std::fs::File::create(&tmp).map_err(io)?;
    let mut ctx = Context::new(&SHA256);
    let mut reader = resp.into_reader().take(MAX_ASSET + 1);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        ctx.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io)?;
    }
    let got = hex::encode(ctx.finish().as_ref());
    let cleanup = || {
        let _ = std::fs::remove_file(&tmp);
    };
    if total > MAX_ASSET {
        cleanup();
        return Err(fail("larger than the cache accepts".into()));
    }
    if let Some(w) = want {
        if w != got {
            cleanup();
            return Err(CacheError::Checksum {
                url: url.to_string(),
                got,
                want: w.to_string(),
            });
        }
    }
    out.sync_all().map_err(io)?;
    std::fs::rename(&tmp, dir.join("sha256").join(&got)).map_err(io)?;
    std::fs::write(dir.join("urls").join(key), &got).map_err(io)?;
    Ok(got)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::Ordering;

    use crate::test_support::upstream;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_requests_fetch_once_and_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (url, hits) = upstream(b"kernel bytes");
        let cache = Arc::new(AssetCache::new(dir.path().to_path_buf()));
        let key = cache.register(&url, Some(&hex_sha256(b"kernel bytes")));
        let (a, b) = tokio::join!(cache.ensure(&key), cache.ensure(&key));
        assert_eq!(a.clone().unwrap(), b.unwrap());
        assert_eq!(hits.load(Ordering::SeqCst), 1, "one upstream fetch");
        let stored = std::fs::read(cache.content_dir().join(a.unwrap())).unwrap();
        assert_eq!(stored, b"kernel bytes");
        // After a restart the index answers without the upstream.
        let again = AssetCache::new(dir.path().to_path_buf());
        assert!(again.ensure(&key).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_wrong_checksum_is_refused_and_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _) = upstream(b"tampered");
        let cache = AssetCache::new(dir.path().to_path_buf());
        let key = cache.register(&url, Some(&hex_sha256(b"expected")));
        assert!(matches!(
            cache.ensure(&key).await,
            Err(CacheError::Checksum { .. })
        ));
        assert_eq!(std::fs::read_dir(cache.content_dir()).unwrap().count(), 0);
        assert!(matches!(
            cache.ensure("nope").await,
            Err(CacheError::UnknownKey)
        ));
    }
}
