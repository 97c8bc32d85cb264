//! Shared helpers for the binary's integration tests: start `rackboot serve`, wait, stop.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rackboot");

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `rackboot serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub admin_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `rackboot serve` on loopback with the given extra flags; waits for /healthz.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        let admin_port = free_tcp_port();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data)
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .args(extra)
            .env_remove("RACKBOOT_CONFIG")
            .env("RACKBOOT_LOG_LEVEL", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(data.with_extension("log")).unwrap(),
            ));
        let server = Server {
            child: cmd.spawn().unwrap(),
            admin_port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "rackboot serve did not come up; log: {}",
            data.with_extension("log").display()
        );
    }

    /// GET a path on the admin API (loopback: no token needed for reads).
    pub fn get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    }
}

/// Value of a Prometheus sample line that starts with `prefix` (summed over matches).
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Panic with a clear message when a required peer tool is missing (`make deps-test` installs it).
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run `make deps-test` (this test drives the real {tool})"
    );
}
