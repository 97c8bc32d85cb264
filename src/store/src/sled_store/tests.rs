#![allow(clippy::unwrap_used)]

use super::*;
use crate::model::{MachineState, PowerState};

pub(crate) fn machine(id: &str, mac: &str) -> Machine {
    Machine {
        id: id.into(),
        name: Some(format!("name-{id}")),
        uuid: None,
        macs: vec![mac.into()],
        bmc: None,
        state: MachineState::Registered,
        state_reason: None,
        power: PowerState::Unknown,
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

#[test]
fn create_get_update_remove() {
    let s = SledStore::temporary().unwrap();
    let m = s.create_machine(machine("a", "52:54:00:00:00:01")).unwrap();
    assert_eq!(m.generation, 1);
    assert_eq!(s.get_machine("a").unwrap().unwrap(), m);
    assert_eq!(
        s.machine_by_mac("52:54:00:00:00:01").unwrap().unwrap().id,
        "a"
    );
    assert!(matches!(
        s.create_machine(machine("a", "52:54:00:00:00:09")),
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        s.create_machine(machine("b", "52:54:00:00:00:01")),
        Err(StoreError::MacTaken { .. })
    ));

    let mut m2 = m.clone();
    m2.macs = vec!["52:54:00:00:00:02".into()];
    m2.uuid = Some("11111111-2222-3333-4444-555555555551".into());
    let m2 = s.update_machine(m2).unwrap();
    assert_eq!(m2.generation, 2);
    assert!(
        s.machine_by_mac("52:54:00:00:00:01").unwrap().is_none(),
        "old MAC index dropped"
    );
    assert_eq!(
        s.machine_by_uuid("11111111-2222-3333-4444-555555555551")
            .unwrap()
            .unwrap()
            .id,
        "a"
    );

    // A write based on generation 1 is now stale.
    assert!(matches!(
        s.update_machine(m),
        Err(StoreError::Stale {
            expected: 1,
            stored: 2,
            ..
        })
    ));

    assert_eq!(s.list_machines().unwrap().len(), 1);
    assert!(s.remove_machine("a").unwrap().is_some());
    assert!(s.get_machine("a").unwrap().is_none());
    assert!(s.machine_by_mac("52:54:00:00:00:02").unwrap().is_none());
    assert!(s.remove_machine("a").unwrap().is_none());
}

#[test]
fn events_are_ordered_per_machine_and_global() {
    let s = SledStore::temporary().unwrap();
    for i in 0..5 {
        s.append_event("a", "state", &format!("a{i}")).unwrap();
        s.append_event("b", "state", &format!("b{i}")).unwrap();
    }
    let a = s.events(Some("a"), 0, 100).unwrap();
    assert_eq!(
        a.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["a0", "a1", "a2", "a3", "a4"]
    );
    let all = s.events(None, 0, 100).unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let tail = s.events(None, all[7].seq, 100).unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(s.events(Some("a"), a[3].seq, 100).unwrap().len(), 1);
    assert!(s.events(Some("zzz"), 0, 100).unwrap().is_empty());
}

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.create_machine(machine("a", "52:54:00:00:00:01")).unwrap();
        s.append_event("a", "created", "hello").unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert!(s.get_machine("a").unwrap().is_some());
    assert_eq!(s.events(Some("a"), 0, 10).unwrap().len(), 1);
}

/// Readers on other threads never see a machine go back in time while a writer updates it, and
/// once the writes are done every read (by id, MAC, UUID) returns the last one: the decoded
/// cache cannot keep a record older than the store's.
#[test]
fn cached_reads_follow_concurrent_writes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let s = Arc::new(SledStore::temporary().unwrap());
    let mut m = machine("m1", "02:00:00:00:00:01");
    m.uuid = Some("11111111-2222-3333-4444-555555555555".into());
    let mut m = s.create_machine(m).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|i| {
            let (s, done) = (s.clone(), done.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let got = match i {
                        0 => s.get_machine("m1"),
                        1 => s.machine_by_mac("02:00:00:00:00:01"),
                        _ => s.machine_by_uuid("11111111-2222-3333-4444-555555555555"),
                    }
                    .unwrap()
                    .unwrap();
                    assert!(got.generation >= last, "{} after {last}", got.generation);
                    // Each update names the machine after the generation it writes: a record
                    // pieced together from two versions would not match.
                    if got.generation > 1 {
                        assert_eq!(got.name, Some(format!("n{}", got.generation)));
                    }
                    last = got.generation;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for _ in 0..200 {
        m.name = Some(format!("n{}", m.generation + 1));
        m = s.update_machine(m).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    for got in [
        s.get_machine("m1"),
        s.machine_by_mac("02:00:00:00:00:01"),
        s.machine_by_uuid("11111111-2222-3333-4444-555555555555"),
    ] {
        assert_eq!(got.unwrap().unwrap(), m);
    }
    // A MAC moved off the machine no longer finds it; a removed machine is gone for every key.
    m.macs = vec!["02:00:00:00:00:02".into()];
    let m = s.update_machine(m).unwrap();
    assert_eq!(s.machine_by_mac("02:00:00:00:00:01").unwrap(), None);
    assert_eq!(s.machine_by_mac("02:00:00:00:00:02").unwrap(), Some(m));
    s.remove_machine("m1").unwrap();
    assert_eq!(s.get_machine("m1").unwrap(), None);
    assert_eq!(
        s.machine_by_uuid("11111111-2222-3333-4444-555555555555")
            .unwrap(),
        None
    );
    // A UUID read through one machine and then given to another is found on the other.
    let u2 = "22222222-2222-3333-4444-555555555555";
    let mut a = machine("a2", "02:00:00:00:00:0a");
    a.uuid = Some(u2.into());
    let a = s.create_machine(a).unwrap();
    assert_eq!(s.machine_by_uuid(u2).unwrap().unwrap().id, "a2");
    assert_eq!(s.machine_by_uuid(u2).unwrap().unwrap().id, "a2");
    let mut a = a;
    a.uuid = None;
    s.update_machine(a).unwrap();
    assert_eq!(s.machine_by_uuid(u2).unwrap(), None);
    let mut b = machine("b2", "02:00:00:00:00:0b");
    b.uuid = Some(u2.into());
    s.create_machine(b).unwrap();
    assert_eq!(s.machine_by_uuid(u2).unwrap().unwrap().id, "b2");
    s.remove_machine("b2").unwrap();
    assert_eq!(s.machine_by_uuid(u2).unwrap(), None);
    // Created again under the same id: generation 1 again, and that is what every read sees.
    let again = s
        .create_machine(machine("m1", "02:00:00:00:00:03"))
        .unwrap();
    assert_eq!(again.generation, 1);
    assert_eq!(s.get_machine("m1").unwrap(), Some(again.clone()));
    assert_eq!(s.machine_by_mac("02:00:00:00:00:03").unwrap(), Some(again));
}

/// Writes inside a batch are visible at once and durable after it (one flush at the end);
/// a nested batch is part of the outer one, and a panic inside ends the batch on this thread.
#[test]
fn batched_writes_are_visible_at_once_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.batch(&mut || {
            for i in 0..50u8 {
                let id = format!("m{i}");
                s.create_machine(machine(&id, &format!("52:54:00:00:01:{i:02x}")))
                    .unwrap();
                assert!(s.get_machine(&id).unwrap().is_some(), "not visible inside");
                s.batch(&mut || {
                    s.append_event(&id, "boot", "nested").unwrap();
                })
                .unwrap();
            }
        })
        .unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = s.batch(&mut || panic!("inside a batch"));
        }));
        assert!(panicked.is_err());
        assert!(DEFERRED.with(|d| d.get()).is_none(), "batch not ended");
        s.create_machine(machine("after", "52:54:00:00:02:01"))
            .unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.list_machines().unwrap().len(), 51);
    assert_eq!(s.events(Some("m7"), 0, 10).unwrap().len(), 1);
}
