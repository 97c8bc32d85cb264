//! Disk wiping on a path: a block device node in the image, a plain image file in tests.
//!
//! - fast: discard the whole device when it is a block device and `blkdiscard` exists (before
//!   zeroing: reads after a discard are not guaranteed to return zeroes), then zero the first
//!   and the last MiB (MBR, GPT primary and backup headers, most filesystem, LVM, mdraid and ZFS
//!   labels) and the btrfs superblock mirrors (64 MiB, 256 GiB), then fsync.
//! - full: zero the whole device in 4 MiB chunks, reporting progress about every 5 %, fsync.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

const MIB: u64 = 1 << 20;
/// Chunk size of a full wipe.
pub const CHUNK: u64 = 4 * MIB;
/// Extra superblock copies outside the first/last MiB (btrfs mirrors 1 and 2).
const EXTRA_SUPERBLOCKS: &[u64] = &[64 * MIB, 256 << 30];
const SUPERBLOCK_LEN: u64 = 64 << 10;

/// Why a wipe failed.
#[derive(Debug, thiserror::Error)]
pub enum WipeError {
    /// Opening, seeking, writing or syncing failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The device or file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A region that was zeroed: `[offset, offset+len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Region {
    /// Byte offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// What was done to one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskWipe {
    /// Disk name (`sda`, or the file name of an override).
    pub name: String,
    /// Device path.
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// `fast` or `full`.
    pub mode: &'static str,
    /// Regions zeroed (a full wipe: one region, the whole device).
    pub zeroed: Vec<Region>,
    /// The whole device was discarded (BLKDISCARD via `blkdiscard`).
    pub discarded: bool,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WipeError + 'a {
    move |source| WipeError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

fn open(path: &Path) -> Result<(File, u64), WipeError> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("opening", path))?;
    // Seeking to the end gives the size of block devices and regular files alike.
    let size = f.seek(SeekFrom::End(0)).map_err(io("sizing", path))?;
    Ok((f, size))
}

fn zero_range(f: &mut File, path: &Path, offset: u64, len: u64) -> Result<(), WipeError> {
    let zeros = vec![0u8; CHUNK.min(len) as usize];
    f.seek(SeekFrom::Start(offset))
        .map_err(io("seeking", path))?;
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64);
        // `n` ≤ zeros.len(), so the slice is in bounds.
        f.write_all(&zeros[..n as usize])
            .map_err(io("writing", path))?;
        left -= n;
    }
    Ok(())
}

/// The regions a fast wipe zeroes on a device of `size` bytes, merged and sorted.
pub fn fast_regions(size: u64) -> Vec<Region> {
    let mut rs: Vec<(u64, u64)> = vec![(0, size.min(MIB)), (size.saturating_sub(MIB), size)];
    for &off in EXTRA_SUPERBLOCKS {
        if off + SUPERBLOCK_LEN <= size {
            rs.push((off, off + SUPERBLOCK_LEN));
        }
    }
    rs.retain(|(a, b)| b > a);
    rs.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in rs {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
        .into_iter()
        .map(|(a, b)| Region {
            offset: a,
            len: b - a,
        })
        .collect()
}

/// Runs `blkdiscard` on a block device when the tool exists; `true` if it succeeded.
fn discard(path: &Path) -> bool {
    let is_block = std::fs::metadata(path)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    if !is_block {
        return false;
    }
    let Some(bin) = crate::bmc::which("blkdiscard") else {
        return false;
    };
    match Command::new(bin).arg(path).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            crate::log!(
                "blkdiscard {}: {} (not supported?)",
                path.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            crate::log!("blkdiscard {}: {e}", path.display());
            false
        }
    }
}

fn name_of(name: &str, path: &Path) -> String {
    if name.is_empty() {
        path.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        name.to_string()
    }
}

/// Fast wipe of `path` (see the module docs).
pub fn wipe_fast(name: &str, path: &Path) -> Result<DiskWipe, WipeError> {
    let discarded = discard(path);
    let (mut f, size) = open(path)?;
    let zeroed = fast_regions(size);
    for r in &zeroed {
        zero_range(&mut f, path, r.offset, r.len)?;
    }
    f.sync_all().map_err(io("syncing", path))?;
    Ok(DiskWipe {
        name: name_of(name, path),
        path: path.display().to_string(),
        size_bytes: size,
        mode: "fast",
        zeroed,
        discarded,
    })
}

/// Full wipe of `path`: zero everything in [`CHUNK`]s. `progress(done, total)` is called at
/// the start (0), whenever another ~5 % is done, and at the end (total == done).
pub fn wipe_full(
    name: &str,
    path: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<DiskWipe, WipeError> {
    let (mut f, size) = open(path)?;
    f.seek(SeekFrom::Start(0)).map_err(io("seeking", path))?;
    let zeros = vec![0u8; CHUNK as usize];
    let step = (size / 20).max(1);
    let mut next_report = step;
    let mut done = 0u64;
    progress(0, size);
    while done < size {
        let n = (size - done).min(CHUNK);
        // `n` ≤ CHUNK == zeros.len().
        f.write_all(&zeros[..n as usize])
            .map_err(io("writing", path))?;
        done += n;
        if done >= next_report || done == size {
            if done < size {
                // Bound dirty page cache on huge disks and make the progress honest.
                f.sync_data().map_err(io("syncing", path))?;
            }
            progress(done, size);
            while next_report <= done {
                next_report += step;
            }
        }
    }
    f.sync_all().map_err(io("syncing", path))?;
    Ok(DiskWipe {
        name: name_of(name, path),
        path: path.display().to_string(),
        size_bytes: size,
        mode: "full",
        zeroed: vec![Region {
            offset: 0,
            len: size,
        }],
        discarded: false,
    })
}

/// A disk to wipe: its report name and the path written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Name (`sda`).
    pub name: String,
    /// Path (`/dev/sda`, or an image file).
    pub path: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn regions_small_and_large() {
        assert_eq!(fast_regions(0), vec![]);
        assert_eq!(
            fast_regions(4096),
            vec![Region {
                offset: 0,
                len: 4096
            }]
        );
        assert_eq!(
            fast_regions(2 * MIB),
            vec![Region {
                offset: 0,
                len: 2 * MIB
            }]
        );
        let big = 512u64 << 30;
        assert_eq!(
            fast_regions(big),
            vec![
                Region {
                    offset: 0,
                    len: MIB
                },
                Region {
                    offset: 64 * MIB,
                    len: SUPERBLOCK_LEN
                },
                Region {
                    offset: 256 << 30,
                    len: SUPERBLOCK_LEN
                },
                Region {
                    offset: big - MIB,
                    len: MIB
                },
            ]
        );
    }

    #[test]
    fn full_progress_is_monotonic_and_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("d.img");
        std::fs::write(&p, vec![0xAAu8; (10 * MIB + 123) as usize]).expect("write");
        let mut seen = Vec::new();
        let w = wipe_full("", &p, |d, t| seen.push((d, t))).expect("wipe");
        assert_eq!(w.name, "d.img");
        assert_eq!(seen.first(), Some(&(0, 10 * MIB + 123)));
        assert_eq!(seen.last(), Some(&(10 * MIB + 123, 10 * MIB + 123)));
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
        let mut buf = Vec::new();
        File::open(&p)
            .expect("open")
            .read_to_end(&mut buf)
            .expect("read");
        assert!(buf.iter().all(|b| *b == 0));
    }
}
