//! Wipes on plain 64 MiB image files (no loop devices).

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use rackboot_agent::wipe;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 64 * MIB;

/// A 64 MiB "disk" filled with 0x5A, with a protective MBR + GPT header at the start, an ext4
/// superblock magic at 1024+56, and the GPT backup header in the last sector.
fn fake_disk(path: &Path) {
    let mut f = File::create(path).expect("create");
    let fill = vec![0x5Au8; MIB as usize];
    for _ in 0..SIZE / MIB {
        f.write_all(&fill).expect("fill");
    }
    let put = |f: &mut File, off: u64, data: &[u8]| {
        f.seek(SeekFrom::Start(off)).expect("seek");
        f.write_all(data).expect("write");
    };
    put(&mut f, 510, &[0x55, 0xAA]); // MBR signature
    put(&mut f, 512, b"EFI PART"); // GPT primary header
    put(&mut f, 1024 + 56, &[0x53, 0xEF]); // ext4 magic
    put(&mut f, SIZE - 512, b"EFI PART"); // GPT backup header
    f.sync_all().expect("sync");
}

fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(path).expect("open");
    f.seek(SeekFrom::Start(off)).expect("seek");
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).expect("read");
    b
}

#[test]
fn fast_wipe_zeroes_first_and_last_mib_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("disk.img");
    fake_disk(&p);
    assert_eq!(&read_at(&p, 512, 8), b"EFI PART");

    let w = wipe::wipe_fast("vda", &p).expect("wipe");
    assert_eq!(w.name, "vda");
    assert_eq!(w.size_bytes, SIZE);
    assert_eq!(w.mode, "fast");
    assert!(!w.discarded, "a plain file is never discarded");
    assert_eq!(
        w.zeroed,
        vec![
            wipe::Region {
                offset: 0,
                len: MIB
            },
            wipe::Region {
                offset: SIZE - MIB,
                len: MIB
            },
        ]
    );

    assert!(
        read_at(&p, 0, MIB as usize).iter().all(|b| *b == 0),
        "first MiB"
    );
    assert!(
        read_at(&p, SIZE - MIB, MIB as usize)
            .iter()
            .all(|b| *b == 0),
        "last MiB"
    );
    // The middle is untouched (a fast wipe is not a full one).
    assert!(read_at(&p, MIB, 4096).iter().all(|b| *b == 0x5A));
    assert!(read_at(&p, SIZE - MIB - 4096, 4096)
        .iter()
        .all(|b| *b == 0x5A));
    assert_eq!(
        fs::metadata(&p).expect("meta").len(),
        SIZE,
        "size unchanged"
    );
}

#[test]
fn full_wipe_zeroes_everything_with_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("disk.img");
    fake_disk(&p);
    let mut progress = Vec::new();
    let w = wipe::wipe_full("vda", &p, |d, t| progress.push((d, t))).expect("wipe");
    assert_eq!(w.mode, "full");
    assert_eq!(
        w.zeroed,
        vec![wipe::Region {
            offset: 0,
            len: SIZE
        }]
    );

    let mut all = Vec::new();
    File::open(&p)
        .expect("open")
        .read_to_end(&mut all)
        .expect("read");
    assert_eq!(all.len() as u64, SIZE);
    assert!(all.iter().all(|b| *b == 0));

    // 0, then about every 5 % (4 MiB chunks of 64 MiB: every chunk crosses a 5 % step), end.
    assert_eq!(progress.first(), Some(&(0, SIZE)));
    assert_eq!(progress.last(), Some(&(SIZE, SIZE)));
    assert!(progress.len() >= 10 && progress.len() <= 22, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn tiny_and_missing_devices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("tiny.img");
    fs::write(&p, [0xFFu8; 3000]).expect("write");
    let w = wipe::wipe_fast("", &p).expect("wipe");
    assert_eq!(w.name, "tiny.img");
    assert_eq!(fs::read(&p).expect("read"), vec![0u8; 3000]);

    let e = wipe::wipe_fast("x", &dir.path().join("missing")).expect_err("missing");
    assert!(e.to_string().contains("opening"), "{e}");
}
