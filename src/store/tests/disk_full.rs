//! The data disk fills up under a running store (a small tmpfs; needs root): the failed write
//! is refused and never seen, reads go on, writes are refused while the disk is full, and resume
//! without reopening the store by hand once space returns; every acknowledged write survives.
#![allow(clippy::unwrap_used)]

use rackboot_store::{Machine, MachineState, SledStore, Store, StoreError};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn machine(id: &str, n: u64) -> Machine {
    Machine {
        id: id.into(),
        name: Some(id.into()),
        uuid: None,
        macs: vec![format!(
            "02:00:00:00:{:02x}:{:02x}",
            (n >> 8) as u8,
            n as u8
        )],
        bmc: None,
        state: MachineState::Registered,
        state_reason: None,
        power: Default::default(),
        boot_mode: None,
        lifecycle: Default::default(),
        omni: Default::default(),
        hardware: None,
        boot: Default::default(),
        agent_token_sha256: None,
        created_ms: 0,
        updated_ms: 0,
        generation: 0,
    }
}

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a child process spawned by a test running alongside may hold a file here
        // for a moment.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn fill(file: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let chunk = vec![0u8; 1 << 16];
    while f.write_all(&chunk).is_ok() {}
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("mnt"), "16m");
    let db = fs.0.join("inventory");
    let s = SledStore::open_with_reserve(&db, 2 << 20).unwrap();
    assert!(db.join("reserve").exists());
    assert_eq!(s.write_fault(), None);
    let mut acked = vec![];
    for i in 0..20u64 {
        let id = format!("a{i}");
        s.create_machine(machine(&id, i)).unwrap();
        acked.push(id);
    }
    s.append_event("a0", "created", "before").unwrap();

    fill(&fs.0.join("filler"));
    let mut failed = None;
    for i in 20..100_000u64 {
        let id = format!("a{i}");
        match s.create_machine(machine(&id, i)) {
            Ok(_) => acked.push(id),
            Err(e) => {
                failed = Some((id, e));
                break;
            }
        }
    }
    let (failed_id, err) = failed.expect("a write failed on the full disk");
    assert!(matches!(err, StoreError::Db(_)), "{err:?}");
    let fault = s.write_fault().expect("the fault is reported");
    assert!(fault.contains("No space left on device"), "{fault}");

    // Reads go on, and show exactly what was acknowledged: the failed write is not there
    // (sled alone would show it from memory until a restart).
    assert!(s.get_machine(&failed_id).unwrap().is_none());
    let listed: Vec<String> = s
        .list_machines()
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    let mut want = acked.clone();
    want.sort();
    let mut got = listed.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(s.events(Some("a0"), 0, 10).unwrap().len(), 1);

    // Writes are refused (without touching the database) while the disk is full.
    for _ in 0..3 {
        match s.create_machine(machine("late", 60_000)) {
            Err(StoreError::WritesRefused(why)) => {
                assert!(why.contains("No space left on device"), "{why}")
            }
            other => panic!("a write on the full disk: {other:?}"),
        }
        assert!(s.append_event("a0", "x", "y").is_err());
        std::thread::sleep(Duration::from_millis(600));
    }
    assert!(s.write_fault().is_some(), "still full");

    // Space returns: writes resume, without reopening the store by hand.
    std::fs::remove_file(fs.0.join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.write_fault().is_some() {
        assert!(Instant::now() < deadline, "writes did not resume");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(db.join("reserve").exists(), "the reserve is back");
    let m = s.create_machine(machine("after", 60_001)).unwrap();
    let mut m2 = m.clone();
    m2.state = MachineState::Discovered;
    s.update_machine(m2).unwrap();
    let ev = s
        .append_event("after", "recovered", "written after")
        .unwrap();
    assert!(ev.seq > 1);

    // And everything is on disk.
    drop(s);
    let s = SledStore::open_with_reserve(&db, 2 << 20).unwrap();
    for id in &acked {
        assert!(
            s.get_machine(id).unwrap().is_some(),
            "{id} was acknowledged"
        );
    }
    assert!(s.get_machine(&failed_id).unwrap().is_none());
    assert_eq!(
        s.get_machine("after").unwrap().unwrap().state,
        MachineState::Discovered
    );
    let evs = s.events(Some("after"), 0, 10).unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(s.events(Some("a0"), 0, 10).unwrap().len(), 1);
    drop(s);
}

#[test]
fn a_store_opened_on_a_full_disk_uses_its_reserve_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("mnt"), "16m");
    let db = fs.0.join("inventory");
    let s = SledStore::open_with_reserve(&db, 2 << 20).unwrap();
    s.create_machine(machine("a", 1)).unwrap();
    drop(s);
    fill(&fs.0.join("filler"));
    let s = SledStore::open_with_reserve(&db, 2 << 20).unwrap();
    assert!(s.get_machine("a").unwrap().is_some());
    assert!(s.write_fault().is_some());
    assert!(matches!(
        s.create_machine(machine("b", 2)),
        Err(StoreError::WritesRefused(_))
    ));
    std::fs::remove_file(fs.0.join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.write_fault().is_some() {
        assert!(Instant::now() < deadline, "writes did not resume");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.create_machine(machine("b", 2)).unwrap();
}
