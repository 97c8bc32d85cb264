//! The store behind one lock, a change counter that wakes watchers, and the state file.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use crate::names::NS_INFRA_PROVIDER_EPHEMERAL;
use crate::persist::{self, PersistError};
use crate::store::Store;

/// Whether a namespace is persisted by Omni.
pub fn persistent(ns: &str) -> bool {
    ns != NS_INFRA_PROVIDER_EPHEMERAL
}

#[derive(Debug)]
struct PersistState {
    file: Option<PathBuf>,
    /// Off after a wipe, or at start-up when the file already holds a snapshot, until a
    /// restore: so an empty double never overwrites the snapshot it is to restore.
    enabled: bool,
}

/// Shared state of one double.
#[derive(Debug)]
pub struct Shared {
    store: Mutex<Store>,
    changes: watch::Sender<u64>,
    persist: Mutex<PersistState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn persistent_positions(store: &Store) -> i64 {
    store
        .kinds()
        .iter()
        .filter(|(ns, _)| persistent(ns))
        .map(|(ns, ty)| store.write_pos(ns, ty))
        .sum()
}

impl Shared {
    /// Wraps `store`; `file` is the state file, written only while persistence is enabled.
    pub fn new(store: Store, file: Option<PathBuf>, enabled: bool) -> Self {
        Shared {
            store: Mutex::new(store),
            changes: watch::channel(0).0,
            persist: Mutex::new(PersistState { file, enabled }),
        }
    }

    /// Reads the store.
    pub fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&lock(&self.store))
    }

    /// Changes the store, wakes watchers and rewrites the state file if a persistent
    /// namespace changed.
    pub fn write<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let mut store = lock(&self.store);
        let before = persistent_positions(&store);
        let out = f(&mut store);
        if persistent_positions(&store) != before {
            if let Err(e) = self.save_locked(&store) {
                tracing::error!(error = %e, "writing the state file");
            }
        }
        drop(store);
        self.changes.send_modify(|n| *n += 1);
        out
    }

    fn save_locked(&self, store: &Store) -> Result<(), PersistError> {
        let p = lock(&self.persist);
        match (&p.file, p.enabled) {
            (Some(file), true) => persist::save(file, &store.snapshot(persistent)),
            _ => Ok(()),
        }
    }

    /// A receiver that changes after every write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Turns state-file writing on or off.
    pub fn set_persisting(&self, on: bool) {
        lock(&self.persist).enabled = on;
    }

    /// Whether the state file is being written.
    pub fn persisting(&self) -> bool {
        let p = lock(&self.persist);
        p.enabled && p.file.is_some()
    }

    /// The state file, if any.
    pub fn state_file(&self) -> Option<PathBuf> {
        lock(&self.persist).file.clone()
    }
}
