//! Crash durability: a child process writes to the store in a loop and is killed with SIGKILL at
//! random points, 200 times; after each kill the store must open cleanly and hold every write the
//! child saw acknowledged (it prints `ack <id>` only after the call returned).
#![allow(clippy::unwrap_used)]

use rackboot_store::{Machine, MachineState, SledStore, Store};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "RACKBOOT_CRASH_CHILD_DIR";
const ROUNDS: u32 = 200;

fn machine(id: &str, n: u64) -> Machine {
    Machine {
        id: id.into(),
        name: Some(id.into()),
        uuid: None,
        macs: vec![format!(
            "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
            (n >> 24) as u8,
            (n >> 16) as u8,
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

/// The child: not a test on its own (returns at once unless started by `sigkill_durability`).
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("RACKBOOT_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let store = SledStore::open(std::path::Path::new(&dir)).unwrap();
    for i in 0u64.. {
        let n = round * 1_000_000 + i;
        let id = format!("r{round}-{i}");
        let m = store.create_machine(machine(&id, n)).unwrap();
        println!("ack machine {id}");
        let mut m2 = m.clone();
        m2.state = MachineState::Discovered;
        store.update_machine(m2).unwrap();
        println!("ack state {id}");
        let ev = store.append_event(&id, "created", "crash test").unwrap();
        println!("ack event {id} {}", ev.seq);
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_durability() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ std::process::id() as u64
        ^ 0x9e37_79b9_7f4a_7c15;
    eprintln!("crash test seed {seed:#x}");
    let mut rng = Rng(seed | 1);
    let exe = std::env::current_exe().unwrap();
    let mut total_acked = 0usize;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("RACKBOOT_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill after a random number of acknowledged writes (0..60), or a random delay.
        let kill_after_acks = rng.next() % 60;
        let extra_delay = Duration::from_micros(rng.next() % 3000);
        let mut lines = BufReader::new(stdout).lines();
        let mut acks = Vec::new();
        while (acks.len() as u64) < kill_after_acks {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("ack ") => acks.push(l),
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        std::thread::sleep(extra_delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acks already written to the pipe before the kill were acknowledged too.
        acks.extend(
            lines
                .map_while(Result::ok)
                .filter(|l| l.starts_with("ack ")),
        );

        let store = SledStore::open(dir.path())
            .unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        for a in &acks {
            let parts: Vec<&str> = a.split(' ').collect();
            let id = parts[2];
            let m = store
                .get_machine(id)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: lost {a}"));
            match parts[1] {
                "state" => assert_eq!(m.state, MachineState::Discovered, "round {round}: lost {a}"),
                "event" => {
                    let seq: u64 = parts[3].parse().unwrap();
                    let evs = store.events(Some(id), 0, 10).unwrap();
                    assert!(evs.iter().any(|e| e.seq == seq), "round {round}: lost {a}");
                }
                _ => {}
            }
        }
        total_acked += acks.len();
    }
    let store = SledStore::open(dir.path()).unwrap();
    eprintln!(
        "{ROUNDS} SIGKILL rounds, {total_acked} acknowledged writes, {} machines stored",
        store.list_machines().unwrap().len()
    );
    assert!(total_acked > 0);
}
