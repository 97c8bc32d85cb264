//! [`Store`] on sled. Trees: `machines` (id → JSON), `macs` (mac → id), `uuids` (uuid → id),
//! `events` (seq → JSON), `machine_events` (id ‖ 0 ‖ seq → ∅), `profiles` (name → JSON),
//! `meta` (schema version).

use crate::model::{Machine, Profile};
use crate::{now_ms, Event, Store, StoreError, SCHEMA_VERSION};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// One open sled database and its trees.
struct Db {
    db: sled::Db,
    machines: sled::Tree,
    macs: sled::Tree,
    uuids: sled::Tree,
    events: sled::Tree,
    machine_events: sled::Tree,
    profiles: sled::Tree,
    /// sled's data file, fsynced after each flush: sled 0.34's flush uses `sync_file_range`,
    /// which does not make a grown file's new size durable across a power cut.
    data_file: Option<std::fs::File>,
}

/// The inventory on sled, surviving a full (or failing) data disk without a restart.
///
/// sled 0.34 poisons itself on the first I/O error (every later write returns it, and reads
/// still see the write that failed, in memory only), and cannot be reopened on a full disk.
/// So: a [`RESERVE_BYTES`] file is kept next to the database; when a call fails with an I/O
/// error, the database is closed (nothing more is written), the reserve is deleted and the
/// database reopened from what is on disk (every acknowledged write, none that failed). Writes
/// are then refused ([`StoreError::WritesRefused`]) without touching sled while the disk has
/// less than twice the reserve free; once it has, the reserve is recreated and writes resume.
/// Reads go on throughout (they wait for a reopen, they never see an unacknowledged write).
pub struct SledStore {
    /// `None` only while a reopen failed (retried at most every [`RETRY`]).
    db: RwLock<Option<Db>>,
    /// The database directory; `None` for a temporary store (no recovery).
    path: Option<PathBuf>,
    reserve_bytes: u64,
    fault: Mutex<FaultState>,
    /// Decoded machines by id (a boot request looks its machine up; without this every lookup
    /// decoded its JSON record).
    cache: Mutex<MachineCache>,
}

/// Machines as last read, by id. A write of a machine is marked from before its transaction
/// until after its commit ([`WriteMark`]): both ends bump `writes` and drop the machine's
/// entry, and `in_flight` counts the writes between the two. A reader fills a missed entry only
/// if `writes` did not change while it read and no write was in flight. So an entry is always
/// the latest committed record, and it is gone before a newer one can commit: no reader sees a
/// record older than one any reader saw before (a reader that read the old record just before
/// a commit does not cache it), and never a removed machine.
#[derive(Default)]
struct MachineCache {
    by_id: std::collections::HashMap<String, Machine>,
    /// The `uuids` index as read (uuid → id); emptied by every write, which may move a UUID.
    by_uuid: std::collections::HashMap<String, String>,
    writes: u64,
    in_flight: u32,
}

/// A write of one machine in progress (see [`MachineCache`]); ends when dropped, whether the
/// transaction committed or failed.
struct WriteMark<'a> {
    store: &'a SledStore,
    id: String,
}

impl Drop for WriteMark<'_> {
    fn drop(&mut self) {
        let mut c = self.store.cache();
        c.writes = c.writes.wrapping_add(1);
        c.in_flight = c.in_flight.saturating_sub(1);
        c.by_id.remove(&self.id);
        c.by_uuid.clear();
    }
}

impl MachineCache {
    fn put(&mut self, m: &Machine) {
        if self.by_id.len() >= CACHE_MAX {
            self.by_id.clear();
        }
        self.by_id.insert(m.id.clone(), m.clone());
    }

    fn put_uuid(&mut self, uuid: &str, id: &str) {
        if self.by_uuid.len() >= CACHE_MAX {
            self.by_uuid.clear();
        }
        self.by_uuid.insert(uuid.to_string(), id.to_string());
    }
}

/// Entries kept before the cache is emptied (far above any rack's inventory).
const CACHE_MAX: usize = 100_000;

/// Space kept free for reopening the database after the disk filled up (sled's recovery
/// writes a snapshot before it opens).
pub const RESERVE_BYTES: u64 = 8 << 20;
/// Minimum time between two attempts to reopen, or to resume writing.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct FaultState {
    /// Bumped at every reopen: a failure seen on an older database is already handled.
    epoch: u64,
    /// Why writes are refused (None: they are not).
    fault: Option<String>,
    /// Earliest time of the next reopen or resume attempt.
    next_try: Option<Instant>,
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn unwrap_tx<T>(r: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Db(e),
    })
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_string(),
        source,
    })
}

fn encode<T: serde::Serialize>(key: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|source| StoreError::Corrupt {
        key: key.to_string(),
        source,
    })
}

impl Db {
    fn open(cfg: sled::Config, data_file: Option<&Path>) -> Result<Self, StoreError> {
        let db = cfg.open()?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            Some(v) => {
                let found = v.as_ref().try_into().map(u32::from_be_bytes).unwrap_or(0);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema { found });
                }
            }
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        Ok(Self {
            machines: db.open_tree("machines")?,
            macs: db.open_tree("macs")?,
            uuids: db.open_tree("uuids")?,
            events: db.open_tree("events")?,
            machine_events: db.open_tree("machine_events")?,
            profiles: db.open_tree("profiles")?,
            data_file: data_file.and_then(|p| std::fs::File::open(p).ok()),
            db,
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Inside a batch on this thread: owe the flush to its end.
        let deferred = DEFERRED.with(|d| d.get().inspect(|_| d.set(Some(true))).is_some());
        if deferred {
            return Ok(());
        }
        self.flush_now()
    }

    fn flush_now(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        if let Some(f) = &self.data_file {
            f.sync_all()
                .map_err(|e| StoreError::Db(sled::Error::Io(e)))?;
        }
        Ok(())
    }

    fn get_machine(&self, id: &str) -> Result<Option<Machine>, StoreError> {
        match self.machines.get(id)? {
            Some(bytes) => Ok(Some(decode(id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// An update that leaves the indexes as they are (the same MACs and UUID: a sighting, a
    /// state change) as one compare-and-swap of the record. A sled transaction writes and
    /// syncs the log twice (it rolls the log buffer when it starts and when it ends): a boot
    /// storm's sightings made thousands of such writes. `Ok(false)`: not such an update, or the
    /// record changed meanwhile: the transaction decides.
    fn swap_record(&self, m: &Machine, expected: u64) -> Result<bool, StoreError> {
        let Some(bytes) = self.machines.get(m.id.as_str())? else {
            return Ok(false);
        };
        let old: Machine = decode(&m.id, &bytes)?;
        if old.generation != expected {
            return Err(StoreError::Stale {
                id: m.id.clone(),
                expected,
                stored: old.generation,
            });
        }
        if old.macs != m.macs || old.uuid != m.uuid {
            return Ok(false);
        }
        let new = encode(&m.id, m)?;
        Ok(self
            .machines
            .compare_and_swap(m.id.as_str(), Some(bytes), Some(new))?
            .is_ok())
    }

    /// Write `m` and its indexes inside a transaction, dropping index entries of `old`.
    fn put_tx(
        (machines, macs, uuids): (&TransactionalTree, &TransactionalTree, &TransactionalTree),
        old: Option<&Machine>,
        m: &Machine,
    ) -> TxResult<()> {
        for mac in &m.macs {
            if let Some(owner) = macs.get(mac)? {
                if owner.as_ref() != m.id.as_bytes() {
                    let owner = String::from_utf8_lossy(&owner).into_owned();
                    return abort(StoreError::MacTaken {
                        mac: mac.clone(),
                        owner,
                    });
                }
            }
        }
        if let Some(uuid) = &m.uuid {
            if let Some(owner) = uuids.get(uuid)? {
                if owner.as_ref() != m.id.as_bytes() {
                    let owner = String::from_utf8_lossy(&owner).into_owned();
                    return abort(StoreError::UuidTaken {
                        uuid: uuid.clone(),
                        owner,
                    });
                }
            }
        }
        if let Some(old) = old {
            for mac in old.macs.iter().filter(|mac| !m.macs.contains(mac)) {
                macs.remove(mac.as_str())?;
            }
            if let Some(u) = old.uuid.as_ref().filter(|u| m.uuid.as_ref() != Some(u)) {
                uuids.remove(u.as_str())?;
            }
        }
        for mac in &m.macs {
            macs.insert(mac.as_str(), m.id.as_bytes())?;
        }
        if let Some(u) = &m.uuid {
            uuids.insert(u.as_str(), m.id.as_bytes())?;
        }
        let bytes = encode(&m.id, m).or_else(abort)?;
        machines.insert(m.id.as_str(), bytes)?;
        Ok(())
    }
}

/// Why an I/O error happened, in words an operator can act on.
fn cause(e: &StoreError) -> String {
    match e {
        // sled wraps the OS error in a custom one carrying its debug text.
        StoreError::Db(sled::Error::Io(io)) if io.kind() == std::io::ErrorKind::StorageFull => {
            "No space left on device".to_string()
        }
        StoreError::Db(sled::Error::Io(io)) => io.to_string(),
        other => other.to_string(),
    }
}

impl SledStore {
    /// Open (or create) the inventory in directory `path`, with the default disk reserve.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_reserve(path, RESERVE_BYTES)
    }

    /// Open (or create) the inventory in directory `path`, keeping `reserve_bytes` of disk
    /// space aside (in `path/reserve`) to be able to reopen it after the disk filled up.
    pub fn open_with_reserve(path: &Path, reserve_bytes: u64) -> Result<Self, StoreError> {
        let s = Self {
            db: RwLock::new(None),
            path: Some(path.to_path_buf()),
            reserve_bytes,
            fault: Mutex::default(),
            cache: Mutex::default(),
        };
        let db = match s.open_db() {
            Ok(db) => db,
            // A full disk at start: give the reserve back and try again.
            Err(StoreError::Db(sled::Error::Io(e))) if s.reserve_path().exists() => {
                s.drop_reserve();
                s.set_fault(format!("data disk full or failing at start: {e}"));
                s.open_db()?
            }
            Err(e) => return Err(e),
        };
        *s.db.write().unwrap_or_else(|e| e.into_inner()) = Some(db);
        if s.fault().fault.is_none() {
            if let Err(e) = s.make_reserve() {
                s.set_fault(format!("cannot keep a {reserve_bytes}-byte reserve: {e}"));
            }
        }
        Ok(s)
    }

    /// A throw-away store for tests.
    pub fn temporary() -> Result<Self, StoreError> {
        Ok(Self {
            db: RwLock::new(Some(Db::open(sled::Config::new().temporary(true), None)?)),
            path: None,
            reserve_bytes: 0,
            fault: Mutex::default(),
            cache: Mutex::default(),
        })
    }

    /// Why writes are refused right now (disk full or failing), after checking whether they
    /// can resume; `None` when the store is writable.
    pub fn write_fault(&self) -> Option<String> {
        self.try_resume();
        self.fault().fault.clone()
    }

    fn fault(&self) -> MutexGuard<'_, FaultState> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_fault(&self, why: String) {
        let mut f = self.fault();
        f.next_try = Some(Instant::now() + RETRY);
        f.fault = Some(why);
    }

    fn open_db(&self) -> Result<Db, StoreError> {
        let Some(path) = &self.path else {
            return Err(StoreError::Unavailable(
                "the temporary store cannot be reopened".into(),
            ));
        };
        let open = || Db::open(sled::Config::new().path(path), Some(&path.join("db")));
        let mut opened = open();
        // A child process being spawned at this moment briefly shares the database file and
        // so its lock (until its exec closes it): try again a few times.
        for _ in 0..20 {
            match &opened {
                Err(StoreError::Db(sled::Error::Io(e)))
                    if e.to_string().contains("could not acquire lock") =>
                {
                    std::thread::sleep(Duration::from_millis(25));
                    opened = open();
                }
                _ => break,
            }
        }
        opened
    }

    fn reserve_path(&self) -> PathBuf {
        self.path.clone().unwrap_or_default().join("reserve")
    }

    fn drop_reserve(&self) {
        let _ = std::fs::remove_file(self.reserve_path());
    }

    /// Allocate the reserve file (really allocated: `posix_fallocate`, not a sparse file).
    fn make_reserve(&self) -> std::io::Result<()> {
        if self.path.is_none() || self.reserve_bytes == 0 {
            return Ok(());
        }
        let path = self.reserve_path();
        let result = (|| {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            let len = i64::try_from(self.reserve_bytes).unwrap_or(i64::MAX);
            nix::fcntl::posix_fallocate(std::os::fd::AsRawFd::as_raw_fd(&f), 0, len)
                .map_err(std::io::Error::from)?;
            f.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        result
    }

    /// Bytes available to us on the data disk.
    fn available(&self) -> Option<u64> {
        let st = nix::sys::statvfs::statvfs(self.path.as_ref()?.as_path()).ok()?;
        #[allow(clippy::useless_conversion)] // u32 on some targets
        let (avail, frag) = (
            u64::try_from(st.blocks_available()).unwrap_or(0),
            u64::try_from(st.fragment_size()).unwrap_or(0),
        );
        Some(avail.saturating_mul(frag))
    }

    /// While writes are refused: resume once the disk has room again (twice the reserve
    /// free, then the reserve recreated), at most every [`RETRY`]. Also reopens a database
    /// whose reopen failed.
    fn try_resume(&self) {
        let epoch = {
            let mut f = self.fault();
            if f.fault.is_none() || f.next_try.is_some_and(|t| Instant::now() < t) {
                return;
            }
            f.next_try = Some(Instant::now() + RETRY);
            f.epoch
        };
        if self.db.read().unwrap_or_else(|e| e.into_inner()).is_none() {
            self.reopen(epoch);
            if self.db.read().unwrap_or_else(|e| e.into_inner()).is_none() {
                return;
            }
        }
        if self
            .available()
            .is_some_and(|a| a >= self.reserve_bytes.saturating_mul(2))
            && self.make_reserve().is_ok()
        {
            if let Some(was) = self.fault().fault.take() {
                tracing::warn!(was = %was, "inventory writable again: the data disk has room");
            }
        }
    }

    /// Close the failed database (`epoch`), give the reserve back and open it again from disk.
    fn reopen(&self, epoch: u64) {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        {
            let f = self.fault();
            if f.epoch != epoch {
                return; // another caller already reopened it
            }
        }
        // sled does no more I/O on drop once it has failed; the lock on its file goes with it.
        *db = None;
        self.drop_reserve();
        let opened = self.open_db();
        // What is on disk now decides; drop every decoded record.
        {
            let mut c = self.cache();
            c.by_id.clear();
            c.by_uuid.clear();
            c.writes = c.writes.wrapping_add(1);
        }
        let mut f = self.fault();
        f.epoch += 1;
        f.next_try = Some(Instant::now() + RETRY);
        match opened {
            Ok(d) => *db = Some(d),
            Err(e) => {
                tracing::error!(error = %cause(&e), "inventory database could not be reopened (retrying)");
                f.fault = Some(format!(
                    "inventory database could not be reopened: {}",
                    cause(&e)
                ));
            }
        }
    }

    /// A failed call: from now on refuse writes, and reopen the database unless it is a
    /// temporary one.
    fn failed(&self, epoch: u64, e: &StoreError) {
        {
            let mut f = self.fault();
            if f.epoch != epoch {
                return;
            }
            let why = format!("inventory write failed: {}", cause(e));
            tracing::error!(
                "{why}: writes refused until the data disk has room again (boots are still served)"
            );
            f.fault = Some(why);
        }
        if self.path.is_some() {
            self.reopen(epoch);
        }
    }

    fn with_db<T>(
        &self,
        write: bool,
        op: impl FnOnce(&Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if write {
            self.try_resume();
        } else {
            let closed = self.db.read().unwrap_or_else(|e| e.into_inner()).is_none();
            if closed {
                self.try_resume();
            }
        }
        let (epoch, refused) = {
            let f = self.fault();
            (f.epoch, f.fault.clone())
        };
        if let (true, Some(why)) = (write, refused) {
            return Err(StoreError::WritesRefused(why));
        }
        let result = {
            let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
            let Some(db) = guard.as_ref() else {
                let why = self.fault().fault.clone().unwrap_or_default();
                return Err(StoreError::Unavailable(why));
            };
            op(db)
        };
        if let Err(e @ StoreError::Db(_)) = &result {
            self.failed(epoch, e);
        }
        result
    }

    fn cache(&self) -> MutexGuard<'_, MachineCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Before a write of machine `id`: mark it in flight until the returned mark is dropped
    /// (just after the commit).
    fn write_begins(&self, id: &str) -> WriteMark<'_> {
        let mut c = self.cache();
        c.writes = c.writes.wrapping_add(1);
        c.in_flight = c.in_flight.saturating_add(1);
        c.by_id.remove(id);
        c.by_uuid.clear();
        WriteMark {
            store: self,
            id: id.to_string(),
        }
    }

    /// Machine `id`, from the cache or (then cached) from the database.
    fn cached_machine(&self, id: &str) -> Result<Option<Machine>, StoreError> {
        let started = {
            let c = self.cache();
            if let Some(m) = c.by_id.get(id) {
                return Ok(Some(m.clone()));
            }
            c.writes
        };
        let m = self.read(|d| d.get_machine(id))?;
        if let Some(m) = &m {
            let mut c = self.cache();
            if c.writes == started && c.in_flight == 0 {
                c.put(m);
            }
        }
        Ok(m)
    }

    /// The id an index (`macs`, `uuids`) maps `key` to.
    fn index_id(
        &self,
        index: impl FnOnce(&Db) -> &sled::Tree,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        self.read(|d| {
            Ok(index(d)
                .get(key)?
                .map(|id| String::from_utf8_lossy(&id).into_owned()))
        })
    }

    fn read<T>(&self, op: impl FnOnce(&Db) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.with_db(false, op)
    }

    fn write<T>(&self, op: impl FnOnce(&Db) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.with_db(true, op)
    }
}

thread_local! {
    /// Inside [`Store::batch`] on this thread: `Some(flush owed)`.
    static DEFERRED: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

impl Store for SledStore {
    fn batch(&self, f: &mut dyn FnMut()) -> Result<(), StoreError> {
        if DEFERRED.with(|d| d.get()).is_some() {
            // Nested: the outer batch flushes.
            f();
            return Ok(());
        }
        /// Ends the batch on this thread even if `f` panics.
        struct End;
        impl Drop for End {
            fn drop(&mut self) {
                DEFERRED.with(|d| d.set(None));
            }
        }
        DEFERRED.with(|d| d.set(Some(false)));
        let end = End;
        f();
        let owed = DEFERRED.with(|d| d.get()) == Some(true);
        drop(end);
        if owed {
            self.with_db(true, |d| d.flush_now())?;
        }
        Ok(())
    }

    fn create_machine(&self, mut m: Machine) -> Result<Machine, StoreError> {
        let now = now_ms();
        m.generation = 1;
        m.created_ms = now;
        m.updated_ms = now;
        self.write(|d| {
            let mark = self.write_begins(&m.id);
            unwrap_tx(
                (&d.machines, &d.macs, &d.uuids).transaction(|(t_m, t_mac, t_u)| {
                    if t_m.get(m.id.as_str())?.is_some() {
                        return abort(StoreError::AlreadyExists(m.id.clone()));
                    }
                    Db::put_tx((t_m, t_mac, t_u), None, &m)
                }),
            )?;
            // Readers see a committed record at once (as sled's own reads do), not only after
            // the flush (fsync) below: a writer waiting on it must not make others read stale.
            drop(mark);
            d.flush()
        })?;
        Ok(m)
    }

    fn update_machine(&self, mut m: Machine) -> Result<Machine, StoreError> {
        let expected = m.generation;
        m.generation = expected + 1;
        m.updated_ms = now_ms();
        self.write(|d| {
            let mark = self.write_begins(&m.id);
            if d.swap_record(&m, expected)? {
                drop(mark);
                return d.flush();
            }
            unwrap_tx(
                (&d.machines, &d.macs, &d.uuids).transaction(|(t_m, t_mac, t_u)| {
                    let Some(bytes) = t_m.get(m.id.as_str())? else {
                        return abort(StoreError::NotFound(m.id.clone()));
                    };
                    let old: Machine = decode(&m.id, &bytes).or_else(abort)?;
                    if old.generation != expected {
                        return abort(StoreError::Stale {
                            id: m.id.clone(),
                            expected,
                            stored: old.generation,
                        });
                    }
                    Db::put_tx((t_m, t_mac, t_u), Some(&old), &m)
                }),
            )?;
            drop(mark);
            d.flush()
        })?;
        Ok(m)
    }

    fn get_machine(&self, id: &str) -> Result<Option<Machine>, StoreError> {
        self.cached_machine(id)
    }

    fn machine_by_mac(&self, mac: &str) -> Result<Option<Machine>, StoreError> {
        match self.index_id(|d| &d.macs, mac)? {
            Some(id) => self.cached_machine(&id),
            None => Ok(None),
        }
    }

    fn machine_by_uuid(&self, uuid: &str) -> Result<Option<Machine>, StoreError> {
        // Like `cached_machine`: an index entry read while no write ran is kept until the next
        // write (every `boot.ipxe` request looks its machine up by UUID).
        let (hit, started) = {
            let c = self.cache();
            (c.by_uuid.get(uuid).cloned(), c.writes)
        };
        let id = match hit {
            Some(id) => id,
            None => match self.index_id(|d| &d.uuids, uuid)? {
                Some(id) => {
                    let mut c = self.cache();
                    if c.writes == started && c.in_flight == 0 {
                        c.put_uuid(uuid, &id);
                    }
                    id
                }
                None => return Ok(None),
            },
        };
        self.cached_machine(&id)
    }

    fn list_machines(&self) -> Result<Vec<Machine>, StoreError> {
        self.read(|d| {
            d.machines
                .iter()
                .map(|kv| {
                    let (k, v) = kv?;
                    decode(&String::from_utf8_lossy(&k), &v)
                })
                .collect()
        })
    }

    fn remove_machine(&self, id: &str) -> Result<Option<Machine>, StoreError> {
        self.write(|d| {
            let mark = self.write_begins(id);
            let removed = unwrap_tx((&d.machines, &d.macs, &d.uuids).transaction(
                |(t_m, t_mac, t_u)| {
                    let Some(bytes) = t_m.remove(id)? else {
                        return Ok(None);
                    };
                    let old: Machine = decode(id, &bytes).or_else(abort)?;
                    for mac in &old.macs {
                        t_mac.remove(mac.as_str())?;
                    }
                    if let Some(u) = &old.uuid {
                        t_u.remove(u.as_str())?;
                    }
                    Ok(Some(old))
                },
            ))?;
            drop(mark);
            d.flush()?;
            Ok(removed)
        })
    }

    fn append_event(
        &self,
        machine_id: &str,
        kind: &str,
        message: &str,
    ) -> Result<Event, StoreError> {
        self.write(|d| {
            let seq = d.db.generate_id()? + 1;
            let ev = Event {
                seq,
                machine_id: machine_id.to_string(),
                at_ms: now_ms(),
                kind: kind.to_string(),
                message: message.to_string(),
            };
            let bytes = encode("event", &ev)?;
            let mut idx = machine_id.as_bytes().to_vec();
            idx.push(0);
            idx.extend_from_slice(&seq.to_be_bytes());
            // The event, then its entry in the machine's index, without a transaction (which
            // would cost two log writes and syncs): a reader of one machine's events only finds
            // an event that is there; a crash between the two leaves it in the global list only.
            d.events.insert(seq.to_be_bytes(), bytes)?;
            d.machine_events.insert(idx, &[])?;
            d.flush()?;
            Ok(ev)
        })
    }

    fn events(
        &self,
        machine_id: Option<&str>,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let start = after_seq.saturating_add(1).to_be_bytes();
        self.read(|d| {
            let mut out = Vec::new();
            match machine_id {
                None => {
                    for kv in d.events.range(start..).take(limit) {
                        let (_, v) = kv?;
                        out.push(decode("event", &v)?);
                    }
                }
                Some(id) => {
                    let mut from = id.as_bytes().to_vec();
                    from.push(0);
                    let prefix = from.clone();
                    from.extend_from_slice(&start);
                    for kv in d.machine_events.range(from..).take(limit) {
                        let (k, _) = kv?;
                        if !k.starts_with(&prefix) {
                            break;
                        }
                        if let Some(v) = d.events.get(&k[prefix.len()..])? {
                            out.push(decode("event", &v)?);
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    fn size_on_disk(&self) -> u64 {
        self.read(|d| Ok(d.db.size_on_disk().unwrap_or(0)))
            .unwrap_or(0)
    }

    fn write_fault(&self) -> Option<String> {
        SledStore::write_fault(self)
    }

    fn put_profile(&self, p: &Profile) -> Result<(), StoreError> {
        self.write(|d| {
            d.profiles.insert(p.name.as_str(), encode(&p.name, p)?)?;
            d.flush()
        })
    }

    fn get_profile(&self, name: &str) -> Result<Option<Profile>, StoreError> {
        self.read(|d| match d.profiles.get(name)? {
            Some(v) => Ok(Some(decode(name, &v)?)),
            None => Ok(None),
        })
    }

    fn list_profiles(&self) -> Result<Vec<Profile>, StoreError> {
        self.read(|d| {
            d.profiles
                .iter()
                .map(|kv| {
                    let (k, v) = kv?;
                    decode(&String::from_utf8_lossy(&k), &v)
                })
                .collect()
        })
    }

    fn remove_profile(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|d| {
            let removed = d.profiles.remove(name)?.is_some();
            d.flush()?;
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests;
