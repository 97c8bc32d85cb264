//! A TCP forwarder from this process's network namespace into another one: listens on `listen`
//! here and connects each client to `target` inside namespace `ns` (the connecting socket is made
//! on a thread that entered the namespace; sockets stay in the namespace they were made in).
//! This is how a browser on the host reaches rackboot's admin page, which listens on loopback
//! inside the appliance namespace, without any veth or route into the host.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Forwarder {
    pub local: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Connect to `target` from inside network namespace `ns`.
pub fn connect_in(ns: &str, target: SocketAddr) -> io::Result<TcpStream> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path)?;
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        TcpStream::connect_timeout(&target, Duration::from_secs(5))
    })
    .join()
    .map_err(|_| io::Error::other("netns connect thread panicked"))?
}

impl Forwarder {
    /// Listen on `listen` (port 0: any free port) and forward to `target` in `ns`.
    pub fn start(listen: SocketAddr, ns: &str, target: SocketAddr) -> io::Result<Forwarder> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let ns = ns.to_string();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let ns = ns.clone();
                        std::thread::spawn(move || {
                            if let Ok(server) = connect_in(&ns, target) {
                                let _ = splice(client, server);
                            }
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        Ok(Forwarder {
            local,
            stop,
            thread: Some(thread),
        })
    }
}

/// Copy both ways until either side closes.
fn splice(client: TcpStream, server: TcpStream) -> io::Result<()> {
    client.set_nonblocking(false)?;
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let _ = io::copy(&mut s_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = s_read.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
