//! The rackboot inventory: machines, their MACs, sealed BMC credentials, boot sightings and an
//! append-only event log, behind the small [`Store`] trait.
//!
//! [`SledStore`] keeps it in a sled database in the data directory. Every write is flushed before
//! the call returns: an acknowledged write survives `kill -9` (tested in `tests/crash.rs`).
//! Multi-tree writes (a machine and its MAC index) happen in one sled transaction. Writes carry
//! the generation they were based on; a stale one is refused with [`StoreError::Stale`].

pub mod model;
mod seal;
mod sled_store;

pub use model::{
    BmcHealth, BmcRecord, BootModeSetting, BootSeen, DiskMethod, Event, LifecycleData, Machine,
    MachineState, OmniBook, PowerState, Profile,
};
pub use seal::{SealError, Sealer};
pub use sled_store::{SledStore, RESERVE_BYTES};

/// Version of the on-disk layout; bumped with a migration when records change incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("machine {0} already exists")]
    AlreadyExists(String),
    #[error("MAC {mac} already belongs to machine {owner}")]
    MacTaken { mac: String, owner: String },
    #[error("UUID {uuid} already belongs to machine {owner}")]
    UuidTaken { uuid: String, owner: String },
    #[error("machine {0} not found")]
    NotFound(String),
    #[error("machine {id} changed since it was read (generation {expected}, stored {stored})")]
    Stale {
        id: String,
        expected: u64,
        stored: u64,
    },
    #[error("store schema version {found} is not supported (this build reads {SCHEMA_VERSION})")]
    Schema { found: u32 },
    #[error("stored record {key} is corrupt")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("inventory database error")]
    Db(#[from] sled::Error),
    /// The data disk is full or failing: writes are refused until it has room again (reads
    /// go on). The text says why (e.g. `No space left on device`).
    #[error("inventory writes refused until the data disk has room again ({0})")]
    WritesRefused(String),
    /// The database could not be reopened after a disk failure (retried every second).
    #[error("inventory unavailable ({0})")]
    Unavailable(String),
    #[error("secret sealing failed")]
    Seal(#[from] SealError),
}

/// The inventory operations the rest of rackboot uses.
pub trait Store: Send + Sync + 'static {
    /// Store a new machine (generation 1). Fails if the id, a MAC or the UUID is taken.
    fn create_machine(&self, m: Machine) -> Result<Machine, StoreError>;
    /// Replace a machine; `m.generation` must equal the stored one. Returns the stored record.
    fn update_machine(&self, m: Machine) -> Result<Machine, StoreError>;
    fn get_machine(&self, id: &str) -> Result<Option<Machine>, StoreError>;
    fn machine_by_mac(&self, mac: &str) -> Result<Option<Machine>, StoreError>;
    fn machine_by_uuid(&self, uuid: &str) -> Result<Option<Machine>, StoreError>;
    fn list_machines(&self) -> Result<Vec<Machine>, StoreError>;
    /// Remove a machine and its indexes (its events stay, for the record).
    fn remove_machine(&self, id: &str) -> Result<Option<Machine>, StoreError>;
    fn append_event(
        &self,
        machine_id: &str,
        kind: &str,
        message: &str,
    ) -> Result<Event, StoreError>;
    /// Events after `after_seq`, oldest first, for one machine or all.
    fn events(
        &self,
        machine_id: Option<&str>,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;
    fn size_on_disk(&self) -> u64;
    /// Why writes are refused right now (the data disk full or failing), or `None`.
    fn write_fault(&self) -> Option<String> {
        None
    }
    /// Run `f`, whose writes from this thread are committed (visible to readers) but made
    /// durable together, with one flush at the end, instead of one flush each: for bulk writes
    /// that can be redone (sightings during a boot storm). Other threads' writes still flush.
    fn batch(&self, f: &mut dyn FnMut()) -> Result<(), StoreError> {
        f();
        Ok(())
    }
    fn put_profile(&self, p: &Profile) -> Result<(), StoreError>;
    fn get_profile(&self, name: &str) -> Result<Option<Profile>, StoreError>;
    fn list_profiles(&self) -> Result<Vec<Profile>, StoreError>;
    fn remove_profile(&self, name: &str) -> Result<bool, StoreError>;
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
