//! A small Image Factory double for the Omni tests: the three endpoints a provider and a booting
//! machine use, shaped like the real service.
//!
//! - `POST /schematics` (YAML body) → `201 {"id": "<64 hex>"}`; the id is derived from the body
//!   (the real factory's is a SHA-256 of the normalised schematic; opaque to callers).
//! - `GET /pxe/<id>/<version>/metal-<arch>` → an iPXE script that loads
//!   `/image/<id>/<version>/kernel-<arch>` with `talos.platform=metal` plus the schematic's
//!   `extraKernelArgs`, and `/image/<id>/<version>/initramfs-<arch>.xz`; unknown id → 404.
//! - `GET /image/<id>/<version>/kernel-<arch>` / `initramfs-<arch>.xz` → the bytes given.
//!
//! Every request line is recorded, so a test can tell who fetched what.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Seen {
    /// `POST /schematics` bodies, in order.
    pub schematics: Vec<String>,
    /// Request lines (`GET /pxe/...`), in order.
    pub requests: Vec<String>,
}

pub struct Factory {
    pub seen: Arc<Mutex<Seen>>,
}

struct Images {
    /// What machines are told to fetch the images from (`http://host:port`).
    public: String,
    kernel: Vec<u8>,
    initramfs: Vec<u8>,
    ids: Mutex<HashMap<String, Vec<String>>>,
}

/// Serve on `listener` (bound by the caller, e.g. inside a network namespace). `public` is the
/// base URL the PXE scripts name for the images.
pub fn serve(listener: TcpListener, public: &str, kernel: Vec<u8>, initramfs: Vec<u8>) -> Factory {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let images = Arc::new(Images {
        public: public.trim_end_matches('/').to_string(),
        kernel,
        initramfs,
        ids: Mutex::new(HashMap::new()),
    });
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (seen, images) = (s2.clone(), images.clone());
            std::thread::spawn(move || handle(conn, &seen, &images));
        }
    });
    Factory { seen }
}

fn handle(conn: TcpStream, seen: &Mutex<Seen>, images: &Images) {
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(read_half);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len.min(1 << 20)];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let line = line.trim_end().to_string();
    if let Ok(mut s) = seen.lock() {
        s.requests.push(line.clone());
    }
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, answer): (&str, &str, Vec<u8>) = match (method, path) {
        ("POST", "/schematics") => {
            let body = String::from_utf8_lossy(&body).into_owned();
            let id = fake_sha(&body);
            if let Ok(mut ids) = images.ids.lock() {
                ids.insert(id.clone(), extra_kernel_args(&body));
            }
            if let Ok(mut s) = seen.lock() {
                s.schematics.push(body);
            }
            (
                "201 Created",
                "application/json",
                format!("{{\"id\":\"{id}\"}}").into_bytes(),
            )
        }
        ("GET", p) => match get(images, p) {
            Some((ctype, bytes)) => ("200 OK", ctype, bytes),
            None => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        },
        _ => ("405 Method Not Allowed", "text/plain", Vec::new()),
    };
    let mut w = conn;
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.len()
    );
    let _ = w.write_all(head.as_bytes());
    let _ = w.write_all(&answer);
}

fn get(images: &Images, path: &str) -> Option<(&'static str, Vec<u8>)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["pxe", id, version, file] => {
            let arch = file.strip_prefix("metal-")?;
            let args = images.ids.lock().ok()?.get(*id)?.join(" ");
            let base = format!("{}/image/{id}/{version}", images.public);
            let script = format!(
                "#!ipxe\nimgfree\nkernel {base}/kernel-{arch} talos.platform=metal console=ttyS0 {args}\ninitrd {base}/initramfs-{arch}.xz\nboot\n"
            );
            Some(("text/plain", script.into_bytes()))
        }
        ["image", id, _version, file] => {
            images.ids.lock().ok()?.get(*id)?;
            if file.starts_with("kernel-") {
                Some(("application/octet-stream", images.kernel.clone()))
            } else if file.starts_with("initramfs-") {
                Some(("application/octet-stream", images.initramfs.clone()))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// FNV-1a of the body, as 64 hex digits (stands in for the factory's SHA-256).
fn fake_sha(body: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in body.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}").repeat(4)
}

/// The `customization.extraKernelArgs` items of a schematic in the block form rackboot writes
/// (`    - "arg"`).
pub fn extra_kernel_args(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in yaml.lines() {
        let t = line.trim();
        if t == "extraKernelArgs:" {
            inside = true;
            continue;
        }
        if inside {
            match t.strip_prefix("- ") {
                Some(item) => out.push(
                    item.trim_matches('"')
                        .replace("\\\"", "\"")
                        .replace("\\\\", "\\"),
                ),
                None => inside = false,
            }
        }
    }
    out
}
