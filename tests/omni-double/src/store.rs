//! The in-memory COSI state: resources by (namespace, type, id) plus a bounded event history
//! per (namespace, type), with the rules of COSI's `inmem` state.
//!
//! Rules (cosi-project/runtime `state/impl/inmem`):
//! - Create: `AlreadyExists` when the id exists; stores owner = the create option's owner,
//!   version 1, `created`/`updated` = now.
//! - Update: `NotFound`; then owner option ≠ stored owner → `OwnerConflict`; then the new
//!   resource's version ≠ stored version → `VersionConflict`; then `expected_phase` given and
//!   ≠ stored phase → `PhaseConflict`. Stores the new metadata and spec as sent, with version
//!   +1, `updated` = now and the stored `created`.
//! - Destroy: `NotFound`; owner mismatch → `OwnerConflict`; finalizers left →
//!   `PendingFinalizers`.
//! - Teardown: `NotFound`; owner mismatch; sets phase `tearingDown` (an update) if running;
//!   answers whether no finalizers are left.
//! - Every change appends an event (CREATED, UPDATED with the old resource, DESTROYED with the
//!   last resource) at the collection's next position; a bookmark is an 8-byte random cookie of
//!   this process run + the big-endian position. A bookmark from another run, or older than the
//!   kept history (capacity − gap), or not yet written, is invalid.
//!
//! Time comes in as an argument; there is no I/O here.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use rackboot_proto::cosi::resource::{Metadata, Resource};

use crate::names::{PHASE_RUNNING, PHASE_TEARING_DOWN};
use crate::query::Filter;

/// What a state operation refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("resource {0} doesn't exist")]
    NotFound(String),
    #[error("resource {0} already exists")]
    AlreadyExists(String),
    #[error(
        "resource {ptr} update conflict: expected version {expected:?}, actual version {actual:?}"
    )]
    VersionConflict {
        ptr: String,
        expected: String,
        actual: String,
    },
    #[error("resource {ptr} is owned by {owner:?}")]
    OwnerConflict { ptr: String, owner: String },
    #[error("resource {ptr} is not in phase {expected}")]
    PhaseConflict { ptr: String, expected: String },
    #[error("resource {ptr} has pending finalizers {finalizers:?}")]
    PendingFinalizers {
        ptr: String,
        finalizers: Vec<String>,
    },
    #[error("invalid watch bookmark")]
    InvalidBookmark,
    #[error("invalid resource: {0}")]
    Invalid(String),
}

/// Kind of a stored event (maps 1:1 to the wire enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Destroyed,
}

/// One change in a collection's history.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub kind: EventKind,
    pub resource: Resource,
    pub old: Option<Resource>,
    pub pos: i64,
}

#[derive(Debug, Default)]
struct Collection {
    items: BTreeMap<String, Resource>,
    history: VecDeque<StoredEvent>,
    write_pos: i64,
}

/// Events read for a watcher, or an overrun (the watcher fell behind the kept history).
#[derive(Debug)]
pub enum Since {
    Events(Vec<StoredEvent>),
    Overrun { write_pos: i64, pos: i64 },
}

/// The whole state.
#[derive(Debug)]
pub struct Store {
    collections: BTreeMap<(String, String), Collection>,
    cookie: [u8; 8],
    capacity: usize,
    gap: usize,
}

/// Pointer text used in error messages.
pub fn ptr(ns: &str, ty: &str, id: &str) -> String {
    format!("{ns}/{ty}/{id}")
}

/// Parses a COSI version string: a positive decimal, or `undefined` (→ `None`).
pub fn parse_version(v: &str) -> Result<Option<u64>, StoreError> {
    if v == "undefined" || v.is_empty() {
        return Ok(None);
    }
    v.parse::<u64>()
        .map(Some)
        .map_err(|_| StoreError::Invalid(format!("invalid version {v:?}")))
}

fn check_phase(p: &str) -> Result<(), StoreError> {
    if p == PHASE_RUNNING || p == PHASE_TEARING_DOWN {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("unknown phase {p:?}")))
    }
}

/// Converts a time to the protobuf timestamp COSI sends.
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

fn meta_of(res: &Resource) -> Result<&Metadata, StoreError> {
    let md = res
        .metadata
        .as_ref()
        .ok_or_else(|| StoreError::Invalid("metadata missing".into()))?;
    if md.namespace.is_empty() || md.r#type.is_empty() || md.id.is_empty() {
        return Err(StoreError::Invalid(
            "namespace, type and id must be set".into(),
        ));
    }
    check_phase(&md.phase)?;
    Ok(md)
}

impl Store {
    /// An empty state keeping `capacity` events per collection, of which the oldest `gap` are
    /// no longer valid as bookmarks (COSI's history gap).
    pub fn new(capacity: usize, gap: usize, cookie: [u8; 8]) -> Self {
        Store {
            collections: BTreeMap::new(),
            cookie,
            capacity: capacity.max(1),
            gap: gap.min(capacity.saturating_sub(1)),
        }
    }

    fn coll(&self, ns: &str, ty: &str) -> Option<&Collection> {
        self.collections.get(&(ns.to_string(), ty.to_string()))
    }

    fn coll_mut(&mut self, ns: &str, ty: &str) -> &mut Collection {
        self.collections
            .entry((ns.to_string(), ty.to_string()))
            .or_default()
    }

    fn publish(
        &mut self,
        ns: &str,
        ty: &str,
        kind: EventKind,
        resource: Resource,
        old: Option<Resource>,
    ) {
        let capacity = self.capacity;
        let c = self.coll_mut(ns, ty);
        let pos = c.write_pos;
        c.history.push_back(StoredEvent {
            kind,
            resource,
            old,
            pos,
        });
        while c.history.len() > capacity {
            c.history.pop_front();
        }
        c.write_pos += 1;
    }

    /// The resource, or `NotFound`.
    pub fn get(&self, ns: &str, ty: &str, id: &str) -> Result<Resource, StoreError> {
        self.coll(ns, ty)
            .and_then(|c| c.items.get(id))
            .cloned()
            .ok_or_else(|| StoreError::NotFound(ptr(ns, ty, id)))
    }

    /// Every resource of the kind passing `filter`, sorted by id.
    pub fn list(&self, ns: &str, ty: &str, filter: &Filter) -> Vec<Resource> {
        let Some(c) = self.coll(ns, ty) else {
            return Vec::new();
        };
        c.items
            .values()
            .filter(|r| {
                r.metadata
                    .as_ref()
                    .is_some_and(|m| filter.matches(&m.id, &m.labels))
            })
            .cloned()
            .collect()
    }

    /// Every (namespace, type) that has ever held a resource.
    pub fn kinds(&self) -> Vec<(String, String)> {
        self.collections.keys().cloned().collect()
    }

    /// Creates `res` owned by `owner`; returns the stored resource.
    pub fn create(
        &mut self,
        mut res: Resource,
        owner: &str,
        now: SystemTime,
    ) -> Result<Resource, StoreError> {
        let md = meta_of(&res)?;
        let (ns, ty, id) = (md.namespace.clone(), md.r#type.clone(), md.id.clone());
        if self
            .coll(&ns, &ty)
            .is_some_and(|c| c.items.contains_key(&id))
        {
            return Err(StoreError::AlreadyExists(ptr(&ns, &ty, &id)));
        }
        if let Some(md) = res.metadata.as_mut() {
            md.owner = owner.to_string();
            md.version = "1".into();
            md.created = Some(timestamp(now));
            md.updated = Some(timestamp(now));
        }
        self.coll_mut(&ns, &ty).items.insert(id, res.clone());
        self.publish(&ns, &ty, EventKind::Created, res.clone(), None);
        Ok(res)
    }

    /// Updates to `res` (whose version must be the stored one); returns the stored resource.
    pub fn update(
        &mut self,
        mut res: Resource,
        owner: &str,
        expected_phase: Option<&str>,
        now: SystemTime,
    ) -> Result<Resource, StoreError> {
        let md = meta_of(&res)?;
        let (ns, ty, id) = (md.namespace.clone(), md.r#type.clone(), md.id.clone());
        let p = ptr(&ns, &ty, &id);
        let sent_version = parse_version(&md.version)?;
        if let Some(ph) = expected_phase {
            check_phase(ph)?;
        }
        let cur = self.get(&ns, &ty, &id)?;
        let cur_md = cur.metadata.clone().unwrap_or_default();
        if cur_md.owner != owner {
            return Err(StoreError::OwnerConflict {
                ptr: p,
                owner: cur_md.owner,
            });
        }
        let cur_version = parse_version(&cur_md.version)?;
        if sent_version != cur_version {
            return Err(StoreError::VersionConflict {
                ptr: p,
                expected: md.version.clone(),
                actual: cur_md.version,
            });
        }
        if let Some(ph) = expected_phase {
            if cur_md.phase != ph {
                return Err(StoreError::PhaseConflict {
                    ptr: p,
                    expected: ph.to_string(),
                });
            }
        }
        let next = cur_version.unwrap_or(0) + 1;
        if let Some(md) = res.metadata.as_mut() {
            md.version = next.to_string();
            md.updated = Some(timestamp(now));
            md.created = cur_md.created;
        }
        self.coll_mut(&ns, &ty).items.insert(id, res.clone());
        self.publish(&ns, &ty, EventKind::Updated, res.clone(), Some(cur));
        Ok(res)
    }

    /// Destroys the resource (owner must match, no finalizers left).
    pub fn destroy(&mut self, ns: &str, ty: &str, id: &str, owner: &str) -> Result<(), StoreError> {
        let cur = self.get(ns, ty, id)?;
        let md = cur.metadata.clone().unwrap_or_default();
        if md.owner != owner {
            return Err(StoreError::OwnerConflict {
                ptr: ptr(ns, ty, id),
                owner: md.owner,
            });
        }
        if !md.finalizers.is_empty() {
            return Err(StoreError::PendingFinalizers {
                ptr: ptr(ns, ty, id),
                finalizers: md.finalizers,
            });
        }
        self.coll_mut(ns, ty).items.remove(id);
        self.publish(ns, ty, EventKind::Destroyed, cur, None);
        Ok(())
    }

    /// Marks the resource tearing down; `Ok(true)` when it may be destroyed now.
    pub fn teardown(
        &mut self,
        ns: &str,
        ty: &str,
        id: &str,
        owner: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let cur = self.get(ns, ty, id)?;
        let md = cur.metadata.clone().unwrap_or_default();
        if md.owner != owner {
            return Err(StoreError::OwnerConflict {
                ptr: ptr(ns, ty, id),
                owner: md.owner,
            });
        }
        if md.phase == PHASE_RUNNING {
            let mut next = cur.clone();
            if let Some(m) = next.metadata.as_mut() {
                m.phase = PHASE_TEARING_DOWN.into();
            }
            self.update(next, owner, None, now)?;
        }
        Ok(md.finalizers.is_empty())
    }

    /// Next position to be written in the collection.
    pub fn write_pos(&self, ns: &str, ty: &str) -> i64 {
        self.coll(ns, ty).map_or(0, |c| c.write_pos)
    }

    /// Oldest position a bookmark may still name (capacity − gap behind the write position).
    pub fn oldest_valid(&self, ns: &str, ty: &str) -> i64 {
        self.write_pos(ns, ty) - self.capacity as i64 + self.gap as i64
    }

    /// Encodes a position as a bookmark of this run.
    pub fn bookmark(&self, pos: i64) -> Vec<u8> {
        let mut b = self.cookie.to_vec();
        b.extend_from_slice(&(pos as u64).to_be_bytes());
        b
    }

    /// Decodes a bookmark and checks it is still in the kept history of the collection;
    /// returns the first position to deliver (the one after the bookmarked event).
    pub fn resume_from(&self, ns: &str, ty: &str, bookmark: &[u8]) -> Result<i64, StoreError> {
        if bookmark.len() != 16 || bookmark[..8] != self.cookie {
            return Err(StoreError::InvalidBookmark);
        }
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bookmark[8..]);
        let pos = u64::from_be_bytes(raw) as i64;
        let write_pos = self.write_pos(ns, ty);
        if pos < self.oldest_valid(ns, ty) || pos < -1 || pos >= write_pos {
            return Err(StoreError::InvalidBookmark);
        }
        Ok(pos + 1)
    }

    /// Events at positions ≥ `pos`, or an overrun if some were already dropped.
    pub fn since(&self, ns: &str, ty: &str, pos: i64) -> Since {
        let Some(c) = self.coll(ns, ty) else {
            return Since::Events(Vec::new());
        };
        let oldest = c.history.front().map_or(c.write_pos, |e| e.pos);
        if pos < oldest {
            return Since::Overrun {
                write_pos: c.write_pos,
                pos,
            };
        }
        Since::Events(c.history.iter().filter(|e| e.pos >= pos).cloned().collect())
    }

    /// Every resource whose namespace passes `keep_ns`.
    pub fn snapshot(&self, keep_ns: impl Fn(&str) -> bool) -> Vec<Resource> {
        self.collections
            .iter()
            .filter(|((ns, _), _)| keep_ns(ns))
            .flat_map(|(_, c)| c.items.values().cloned())
            .collect()
    }

    /// Removes every resource `remove` selects, publishing DESTROYED events (finalizers and
    /// owners are ignored: this is Omni losing its data, not an API call).
    pub fn remove_where(&mut self, remove: impl Fn(&Metadata) -> bool) {
        let mut gone = Vec::new();
        for ((ns, ty), c) in &self.collections {
            for r in c.items.values() {
                if r.metadata.as_ref().is_some_and(&remove) {
                    gone.push((ns.clone(), ty.clone(), r.clone()));
                }
            }
        }
        for (ns, ty, r) in gone {
            let id = r
                .metadata
                .as_ref()
                .map(|m| m.id.clone())
                .unwrap_or_default();
            self.coll_mut(&ns, &ty).items.remove(&id);
            self.publish(&ns, &ty, EventKind::Destroyed, r, None);
        }
    }

    /// Puts `res` in place exactly as given (version and timestamps kept), publishing CREATED
    /// or UPDATED (when something differs) as a watcher would see it.
    pub fn put_raw(&mut self, res: Resource) -> Result<(), StoreError> {
        let md = meta_of(&res)?.clone();
        let old = self
            .coll(&md.namespace, &md.r#type)
            .and_then(|c| c.items.get(&md.id))
            .cloned();
        if old.as_ref() == Some(&res) {
            return Ok(());
        }
        self.coll_mut(&md.namespace, &md.r#type)
            .items
            .insert(md.id.clone(), res.clone());
        let kind = if old.is_some() {
            EventKind::Updated
        } else {
            EventKind::Created
        };
        self.publish(&md.namespace, &md.r#type, kind, res, old);
        Ok(())
    }
}
