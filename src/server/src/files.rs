//! Boot files shared by TFTP and `GET /tftp/<name>`: resolved safely under `<assets>/tftp`,
//! loaded once into memory and shared (`Arc<[u8]>`) by every transfer, reloaded when the file on
//! disk changes (size or mtime).
//!
//! Names are already sanitised by the caller (no `..`, relative). Resolution still canonicalises
//! the path and refuses anything outside the root, which catches symlinks pointing out of it.
//! Virtual names: `x86_64/<f>` falls back to `<f>` (the DHCP core hands HTTP-boot clients
//! `/tftp/x86_64/ipxe.efi`; the Debian files are x86-64 builds).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Files larger than this are not served from memory (TFTP boot files are a few MiB at most).
pub const MAX_CACHED_FILE: u64 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file not found")]
    NotFound,
    #[error("access violation: path leaves the boot root")]
    OutsideRoot,
    #[error("not a regular file")]
    NotAFile,
    #[error("file too large to serve from memory")]
    TooLarge,
    #[error("cannot read file")]
    Io(#[source] std::io::Error),
}

struct Cached {
    data: Arc<[u8]>,
    len: u64,
    mtime: Option<SystemTime>,
}

pub struct BootFiles {
    root: PathBuf,
    /// `root` canonicalised, as last seen (looked up again before refusing a file).
    canonical_root: Mutex<Option<PathBuf>>,
    cache: Mutex<HashMap<PathBuf, Cached>>,
    /// Serialises loads so concurrent first requests read a file once.
    loading: tokio::sync::Mutex<()>,
}

impl BootFiles {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            canonical_root: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Canonical path of `name` under the root, following the virtual-name fallbacks.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, FileError> {
        let root = self.root.canonicalize().map_err(|_| FileError::NotFound)?;
        let mut candidates = vec![name.to_string()];
        if let Some(rest) = name.strip_prefix("x86_64/") {
            candidates.push(rest.to_string());
        }
        for c in candidates {
            let Ok(p) = root.join(&c).canonicalize() else {
                continue;
            };
            if !p.starts_with(&root) {
                return Err(FileError::OutsideRoot);
            }
            if !p.is_file() {
                return Err(FileError::NotAFile);
            }
            return Ok(p);
        }
        Err(FileError::NotFound)
    }

    /// The canonical root: the one remembered, or (`fresh`, or none yet) looked up now.
    fn canonical_root(&self, fresh: bool) -> Option<PathBuf> {
        let mut c = self
            .canonical_root
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if fresh || c.is_none() {
            *c = self.root.canonicalize().ok();
        }
        c.clone()
    }

    /// The file opened for zero-copy sending (`sendfile`), with its length and modification
    /// time taken from the open descriptor. Same resolution as [`Self::get`], without its size
    /// limit ([`MAX_CACHED_FILE`] is for files held in memory).
    ///
    /// Per request this is an open, one `readlink` of the descriptor's `/proc/self/fd` entry
    /// (the path the kernel actually opened, so a symlink out of the root is refused with no
    /// window between check and use) and an `fstat`; canonicalising the root and the name, as
    /// [`Self::resolve`] does, took ~10 `readlink`s (a sixth of the CPU of 400 concurrent
    /// downloads). Without `/proc` it falls back to [`Self::resolve`].
    pub fn open(&self, name: &str) -> Result<(std::fs::File, u64, Option<SystemTime>), FileError> {
        use std::os::fd::AsRawFd;
        let root = self.canonical_root(false).ok_or(FileError::NotFound)?;
        let candidates = [Some(name), name.strip_prefix("x86_64/")];
        for c in candidates.into_iter().flatten() {
            let file = match std::fs::File::open(root.join(c)) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(FileError::Io(e)),
            };
            let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) else {
                return self.open_resolved(name);
            };
            if !real.starts_with(&root)
                && !self
                    .canonical_root(true)
                    .is_some_and(|r| real.starts_with(r))
            {
                return Err(FileError::OutsideRoot);
            }
            return Self::checked(file);
        }
        Err(FileError::NotFound)
    }

    fn open_resolved(
        &self,
        name: &str,
    ) -> Result<(std::fs::File, u64, Option<SystemTime>), FileError> {
        let path = self.resolve(name)?;
        Self::checked(std::fs::File::open(&path).map_err(FileError::Io)?)
    }

    fn checked(file: std::fs::File) -> Result<(std::fs::File, u64, Option<SystemTime>), FileError> {
        let meta = file.metadata().map_err(FileError::Io)?;
        if !meta.is_file() {
            return Err(FileError::NotAFile);
        }
        // No size limit here: nothing is read into memory (a live ISO or rootfs of gigabytes
        // goes out with sendfile like any other asset).
        Ok((file, meta.len(), meta.modified().ok()))
    }

    fn cached(&self, path: &Path, len: u64, mtime: Option<SystemTime>) -> Option<Arc<[u8]>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(path)
            .filter(|c| c.len == len && c.mtime == mtime)
            .map(|c| c.data.clone())
    }

    /// The file's bytes, shared. Blocking file reads run on the blocking pool.
    pub async fn get(&self, name: &str) -> Result<Arc<[u8]>, FileError> {
        self.get_with_mtime(name).await.map(|(d, _)| d)
    }

    /// The file's bytes and modification time (for HTTP validators).
    pub async fn get_with_mtime(
        &self,
        name: &str,
    ) -> Result<(Arc<[u8]>, Option<SystemTime>), FileError> {
        let path = self.resolve(name)?;
        let meta = std::fs::metadata(&path).map_err(FileError::Io)?;
        let (len, mtime) = (meta.len(), meta.modified().ok());
        if let Some(d) = self.cached(&path, len, mtime) {
            return Ok((d, mtime));
        }
        if len > MAX_CACHED_FILE {
            return Err(FileError::TooLarge);
        }
        let _guard = self.loading.lock().await;
        if let Some(d) = self.cached(&path, len, mtime) {
            return Ok((d, mtime));
        }
        let p = path.clone();
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(p))
            .await
            .map_err(|e| FileError::Io(std::io::Error::other(e)))?
            .map_err(FileError::Io)?;
        let data: Arc<[u8]> = Arc::from(bytes.into_boxed_slice());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(
            path,
            Cached {
                data: data.clone(),
                len: data.len() as u64,
                mtime,
            },
        );
        Ok((data, mtime))
    }

    /// Number of distinct files held in memory (for tests and metrics).
    pub fn cached_files(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn loads_once_shares_and_reloads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ipxe.efi"), b"one").unwrap();
        let f = BootFiles::new(dir.path().to_path_buf());
        let a = f.get("ipxe.efi").await.unwrap();
        let b = f.get("x86_64/ipxe.efi").await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one copy shared");
        std::fs::write(dir.path().join("ipxe.efi"), b"second").unwrap();
        assert_eq!(&*f.get("ipxe.efi").await.unwrap(), b"second");
        assert_eq!(f.cached_files(), 1);
    }

    #[tokio::test]
    async fn refuses_symlinks_out_of_the_root_and_directories() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let f = BootFiles::new(dir.path().to_path_buf());
        assert!(matches!(f.get("link").await, Err(FileError::OutsideRoot)));
        assert!(matches!(f.get("sub").await, Err(FileError::NotAFile)));
        assert!(matches!(f.get("missing").await, Err(FileError::NotFound)));
    }

    /// `open` (the zero-copy path) decides like `resolve`: by the file the kernel opened.
    #[test]
    fn open_refuses_what_resolve_refuses_and_follows_links_inside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ipxe.efi"), b"efi").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("dirlink")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("ipxe.efi"), dir.path().join("inside")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let f = BootFiles::new(dir.path().to_path_buf());
        assert!(matches!(f.open("link"), Err(FileError::OutsideRoot)));
        assert!(matches!(
            f.open("dirlink/secret"),
            Err(FileError::OutsideRoot)
        ));
        assert!(matches!(f.open("sub"), Err(FileError::NotAFile)));
        assert!(matches!(f.open("missing"), Err(FileError::NotFound)));
        let (_, len, _) = f.open("inside").unwrap();
        assert_eq!(len, 3);
        // The virtual x86_64/ name falls back to the file at the top.
        let (_, len, _) = f.open("x86_64/ipxe.efi").unwrap();
        assert_eq!(len, 3);
    }

    /// A file too large to hold in memory is still sent with `sendfile` (sparse: no disk used).
    #[tokio::test]
    async fn open_has_no_memory_limit() {
        let dir = tempfile::tempdir().unwrap();
        let big = std::fs::File::create(dir.path().join("live.iso")).unwrap();
        big.set_len(MAX_CACHED_FILE + 4096).unwrap();
        let f = BootFiles::new(dir.path().to_path_buf());
        let (_, len, _) = f.open("live.iso").unwrap();
        assert_eq!(len, MAX_CACHED_FILE + 4096);
        assert!(matches!(f.get("live.iso").await, Err(FileError::TooLarge)));
    }
}
