//! Shared set-up for the server's unit tests: an admin state over a temporary store.
#![allow(clippy::unwrap_used)]

use crate::admin::{AdminState, AdminToken};
use crate::inventory::Inventory;
use crate::lifecycle::Reconciler;
use crate::metrics::Metrics;
use crate::power::{PowerConfig, PowerService};
use rackboot_store::{Sealer, SledStore, Store};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An inventory over a temporary sled store, with its key in `dir`.
pub fn inventory(dir: &std::path::Path) -> Inventory {
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    let sealer = Arc::new(Sealer::open_or_create(&dir.join("secret.key")).unwrap());
    Inventory::new(store, sealer)
}

pub fn power(inventory: &Inventory) -> Arc<PowerService> {
    Arc::new(PowerService::new(
        inventory.clone(),
        PowerConfig {
            pacing: Default::default(),
            poll_interval: Duration::from_secs(60),
            max_parallel: 4,
        },
    ))
}

/// A complete admin state (the temp dir must outlive it).
pub fn admin_state(loopback: bool, token: &str) -> (tempfile::TempDir, AdminState) {
    let dir = tempfile::tempdir().unwrap();
    let inventory = inventory(dir.path());
    let power = power(&inventory);
    let lifecycle = Reconciler::new(inventory.clone(), power.clone(), Default::default()).0;
    let state = AdminState {
        inventory,
        power,
        lifecycle,
        metrics: Arc::new(Metrics::new()),
        token: Arc::new(AdminToken::fixed(token)),
        loopback,
    };
    (dir, state)
}

/// A one-file HTTP server on 127.0.0.1 counting requests (answers slowly, to overlap them).
pub fn upstream(body: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let (base, hits) = http_server("200 OK", body, Duration::from_millis(300));
    (format!("{base}/vmlinuz"), hits)
}

/// An HTTP server on 127.0.0.1 answering every request with `status` and `body` after
/// `delay`, counting requests: its base URL and the count.
pub fn http_server(
    status: &'static str,
    body: &'static [u8],
    delay: Duration,
) -> (String, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            std::thread::sleep(delay);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        }
    });
    (url, hits)
}
