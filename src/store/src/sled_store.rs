//! [`Store`] on sled. Trees: `machines` (id → JSON), `macs` (mac → id), `uuids` (uuid → id),
//! `events` (seq → JSON), `machine_events` (id ‖ 0 ‖ seq → ∅), `profiles` (name → JSON),
//! `meta` (schema version).

use crate::model::{Machine, Profile};
use crate::{now_ms, Event, Store, StoreError, SCHEMA_VERSION};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::path::Path;

pub struct SledStore {
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

impl SledStore {
    /// Open (or create) the inventory in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut s = Self::with_config(sled::Config::new().path(path))?;
        s.data_file = std::fs::File::open(path.join("db")).ok();
        Ok(s)
    }

    /// A throw-away store for tests.
    pub fn temporary() -> Result<Self, StoreError> {
        Self::with_config(sled::Config::new().temporary(true))
    }

    fn with_config(cfg: sled::Config) -> Result<Self, StoreError> {
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
            data_file: None,
            db,
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        if let Some(f) = &self.data_file {
            f.sync_all()
                .map_err(|e| StoreError::Db(sled::Error::Io(e)))?;
        }
        Ok(())
    }

    fn lookup(&self, index: &sled::Tree, key: &str) -> Result<Option<Machine>, StoreError> {
        match index.get(key)? {
            Some(id) => self.get_machine(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Write `m` and its indexes inside a transaction, dropping index entries of `old`.
    fn write(
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

impl Store for SledStore {
    fn create_machine(&self, mut m: Machine) -> Result<Machine, StoreError> {
        let now = now_ms();
        m.generation = 1;
        m.created_ms = now;
        m.updated_ms = now;
        unwrap_tx(
            (&self.machines, &self.macs, &self.uuids).transaction(|(t_m, t_mac, t_u)| {
                if t_m.get(m.id.as_str())?.is_some() {
                    return abort(StoreError::AlreadyExists(m.id.clone()));
                }
                Self::write((t_m, t_mac, t_u), None, &m)
            }),
        )?;
        self.flush()?;
        Ok(m)
    }

    fn update_machine(&self, mut m: Machine) -> Result<Machine, StoreError> {
        let expected = m.generation;
        m.generation = expected + 1;
        m.updated_ms = now_ms();
        unwrap_tx(
            (&self.machines, &self.macs, &self.uuids).transaction(|(t_m, t_mac, t_u)| {
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
                Self::write((t_m, t_mac, t_u), Some(&old), &m)
            }),
        )?;
        self.flush()?;
        Ok(m)
    }

    fn get_machine(&self, id: &str) -> Result<Option<Machine>, StoreError> {
        match self.machines.get(id)? {
            Some(bytes) => Ok(Some(decode(id, &bytes)?)),
            None => Ok(None),
        }
    }

    fn machine_by_mac(&self, mac: &str) -> Result<Option<Machine>, StoreError> {
        self.lookup(&self.macs, mac)
    }

    fn machine_by_uuid(&self, uuid: &str) -> Result<Option<Machine>, StoreError> {
        self.lookup(&self.uuids, uuid)
    }

    fn list_machines(&self) -> Result<Vec<Machine>, StoreError> {
        self.machines
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    fn remove_machine(&self, id: &str) -> Result<Option<Machine>, StoreError> {
        let removed = unwrap_tx((&self.machines, &self.macs, &self.uuids).transaction(
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
        self.flush()?;
        Ok(removed)
    }

    fn append_event(
        &self,
        machine_id: &str,
        kind: &str,
        message: &str,
    ) -> Result<Event, StoreError> {
        let seq = self.db.generate_id()? + 1;
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
        unwrap_tx(
            (&self.events, &self.machine_events).transaction(|(t_e, t_me)| {
                t_e.insert(&seq.to_be_bytes(), bytes.clone())?;
                t_me.insert(idx.clone(), &[])?;
                Ok(())
            }),
        )?;
        self.flush()?;
        Ok(ev)
    }

    fn events(
        &self,
        machine_id: Option<&str>,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let start = after_seq.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        match machine_id {
            None => {
                for kv in self.events.range(start..).take(limit) {
                    let (_, v) = kv?;
                    out.push(decode("event", &v)?);
                }
            }
            Some(id) => {
                let mut from = id.as_bytes().to_vec();
                from.push(0);
                let prefix = from.clone();
                from.extend_from_slice(&start);
                for kv in self.machine_events.range(from..).take(limit) {
                    let (k, _) = kv?;
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    if let Some(v) = self.events.get(&k[prefix.len()..])? {
                        out.push(decode("event", &v)?);
                    }
                }
            }
        }
        Ok(out)
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn put_profile(&self, p: &Profile) -> Result<(), StoreError> {
        self.profiles.insert(p.name.as_str(), encode(&p.name, p)?)?;
        self.flush()
    }

    fn get_profile(&self, name: &str) -> Result<Option<Profile>, StoreError> {
        match self.profiles.get(name)? {
            Some(v) => Ok(Some(decode(name, &v)?)),
            None => Ok(None),
        }
    }

    fn list_profiles(&self) -> Result<Vec<Profile>, StoreError> {
        self.profiles
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    fn remove_profile(&self, name: &str) -> Result<bool, StoreError> {
        let removed = self.profiles.remove(name)?.is_some();
        self.flush()?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests;
