//! Kind watches (bootstrap, then live events; resume from the last bookmark, re-bootstrap when
//! Omni no longer knows it).

use std::collections::HashSet;
use std::sync::Arc;

use rackboot_omni::state::{self, types, EventType};
use rackboot_proto::cosi::resource::Resource;
use rackboot_proto::omni::specs::{BmcConfigSpec, InfraMachineSpec};
use rackboot_proto::tonic::Code;

use super::{Backoff, Link, OmniBmc};

/// What a watch delivers to its consumer.
enum Delivery<'a> {
    Put(&'a Resource),
    Gone(&'a str),
    /// The bootstrap ended; these ids exist (everything else is gone).
    Bootstrapped(&'a HashSet<String>),
}

impl Link {
    async fn watch_kind(
        self: &Arc<Self>,
        ty: &'static str,
        mut deliver: impl FnMut(&Arc<Self>, Delivery<'_>),
    ) {
        let mut bookmark: Option<Vec<u8>> = None;
        let mut backoff = Backoff::default();
        loop {
            let mut c = self.client.clone();
            let mut stream = match c.watch_kind(state::NS, ty, bookmark.clone()).await {
                Ok(s) => s,
                Err(e) if e.code() == Code::FailedPrecondition && bookmark.is_some() => {
                    // Omni restarted (or its history moved on): start over with a bootstrap.
                    tracing::info!(kind = ty, "omni refused our bookmark; bootstrapping again");
                    bookmark = None;
                    continue;
                }
                Err(e) => {
                    self.note_error(ty, &e);
                    tokio::time::sleep(backoff.next()).await;
                    continue;
                }
            };
            let mut seen: Option<HashSet<String>> = bookmark.is_none().then(HashSet::new);
            loop {
                match stream.message().await {
                    Ok(Some(resp)) => {
                        backoff = Backoff::default();
                        for ev in resp.event {
                            if let Some(b) = &ev.bookmark {
                                bookmark = Some(b.clone());
                            }
                            match ev.event_type() {
                                EventType::Created | EventType::Updated => {
                                    if let Some(r) = &ev.resource {
                                        if let Some(s) = seen.as_mut() {
                                            s.insert(state::id_of(r).to_string());
                                        }
                                        deliver(self, Delivery::Put(r));
                                    }
                                }
                                EventType::Destroyed => {
                                    if let Some(r) = &ev.resource {
                                        deliver(self, Delivery::Gone(state::id_of(r)));
                                    }
                                }
                                EventType::Bootstrapped => {
                                    if let Some(s) = seen.take() {
                                        deliver(self, Delivery::Bootstrapped(&s));
                                    }
                                }
                                EventType::Errored => {
                                    tracing::warn!(kind = ty, error = ?ev.error, "omni watch error event");
                                }
                                EventType::Noop => {}
                            }
                        }
                        self.shared.wake.notify_one();
                    }
                    Ok(None) => {
                        tracing::info!(kind = ty, "omni watch ended; resuming");
                        break;
                    }
                    Err(e) => {
                        if e.code() == Code::FailedPrecondition && bookmark.is_some() {
                            tracing::info!(
                                kind = ty,
                                "omni forgot our bookmark; bootstrapping again"
                            );
                            bookmark = None;
                        } else {
                            self.note_error(ty, &e);
                        }
                        break;
                    }
                }
            }
            tokio::time::sleep(backoff.next()).await;
        }
    }

    /// InfraMachines → the spec map the sync loop works from.
    pub(super) async fn machines_watch(self: Arc<Self>) {
        self.watch_kind(types::INFRA_MACHINE, |me, d| {
            let mut specs = me.shared.specs.lock().unwrap_or_else(|p| p.into_inner());
            match d {
                Delivery::Put(r) => match state::spec_of::<InfraMachineSpec>(r) {
                    Ok(spec) => {
                        let tearing_down = r
                            .metadata
                            .as_ref()
                            .is_some_and(|m| m.phase == "tearingDown");
                        specs.insert(state::id_of(r).to_string(), (spec, tearing_down));
                    }
                    Err(e) => {
                        tracing::warn!(id = state::id_of(r), error = %e, "undecodable InfraMachine")
                    }
                },
                Delivery::Gone(id) => {
                    specs.remove(id);
                }
                Delivery::Bootstrapped(ids) => specs.retain(|k, _| ids.contains(k)),
            }
            let n = specs.len();
            drop(specs);
            me.shared.set_status(|s| s.infra_machines = n);
        })
        .await;
    }

    /// BMCConfigs (set by an Omni user) → the machine's BMC in the inventory.
    pub(super) async fn bmc_watch(self: Arc<Self>) {
        self.watch_kind(types::BMC_CONFIG, |me, d| {
            let r = match d {
                Delivery::Put(r) => r,
                Delivery::Gone(id) => {
                    me.shared
                        .pending_bmc
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(id);
                    return;
                }
                Delivery::Bootstrapped(_) => return,
            };
            let uuid = state::id_of(r).to_string();
            let spec = match state::spec_of::<BmcConfigSpec>(r) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(id = %uuid, error = %e, "undecodable BMCConfig");
                    return;
                }
            };
            let Some(ipmi) = spec.config.and_then(|c| c.ipmi) else {
                return;
            };
            if ipmi.address.is_empty() {
                return;
            }
            let port = if ipmi.port == 0 { 623 } else { ipmi.port };
            let bmc = OmniBmc {
                url: format!("ipmi://{}:{port}", ipmi.address),
                username: ipmi.username,
                password: ipmi.password,
            };
            if !me.apply_bmc(&uuid, &bmc) {
                me.shared
                    .pending_bmc
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(uuid, bmc);
            }
        })
        .await;
    }

    /// Give machine `uuid` the BMC from Omni. False when the machine is not in the inventory
    /// yet (the caller keeps the config for later).
    pub(super) fn apply_bmc(&self, uuid: &str, bmc: &OmniBmc) -> bool {
        if self.inventory.find(uuid).is_err() {
            return false;
        }
        match self
            .inventory
            .set_bmc_from_omni(uuid, &bmc.url, &bmc.username, &bmc.password)
        {
            Ok(true) => {
                self.inventory
                    .event(uuid, "omni", &format!("BMC set from Omni: {}", bmc.url))
            }
            Ok(false) => {}
            Err(e) => {
                tracing::info!(machine = %uuid, error = %e, "BMC config from Omni not applied")
            }
        }
        true
    }
}
