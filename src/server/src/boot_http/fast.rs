//! The boot HTTP port's connection shell: plain HTTP/1.x `GET`/`HEAD` of files under `/assets/`
//! and `/tftp/` are answered here with `sendfile(2)` from the page cache (no copy through user
//! space, as nginx does), and `/ipxe/init.ipxe` and `/ipxe/boot.ipxe` with the scripts axum's
//! routes would give (`init_script`, `boot_script`; without hyper's per-request work, a third
//! of the CPU of a script answer); every other connection — `/config`, `/cache/…`, the HTTP/2
//! agent link, anything unusual — is handed, with the bytes read so far, to the hyper + axum
//! service unchanged (also mid-connection, after answered requests).
//!
//! What to answer comes from the sans-IO cores `head::classify` and `ranged::plan`, which the
//! axum file handler uses too, so both paths answer with the same status, headers and bytes.
//! Shutdown is graceful like `axum::serve`'s: no new connections, a response in flight is
//! finished, idle connections are closed, hyper connections get `graceful_shutdown`.

use super::head::{self, FastRequest, Head, Root};
use super::{count, ranged, BootHttp};
use crate::files::FileError;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::fmt::Write as _;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// At most this many bytes per `sendfile` call (the socket takes less when its buffer is full).
const SENDFILE_CHUNK: usize = 4 << 20;
/// A download waiting for socket buffer room tries again after this long without a wake-up.
const STALL_RETRY: Duration = Duration::from_millis(500);
/// Out of file descriptors: a request tries to open its file again this often, for this long.
const FD_RETRY: Duration = Duration::from_millis(20);
const FD_WAIT: Duration = Duration::from_secs(5);

/// Serve the boot HTTP port until `stop` turns true, then drain as described above.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    state: BootHttp,
    mut stop: watch::Receiver<bool>,
) {
    // Every connection task holds a clone; `recv` returns `None` once all have ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    // Failed accepts in a row (logged once per streak).
    let mut failing = 0u64;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        match accepted {
            Ok((tcp, _peer)) => {
                if failing > 0 {
                    tracing::info!(failed = failing, "boot http accepting again");
                    failing = 0;
                }
                let (state, router, stop, alive) = (
                    state.clone(),
                    router.clone(),
                    stop.clone(),
                    alive_tx.clone(),
                );
                tokio::spawn(async move {
                    connection(tcp, &state, router, stop).await;
                    drop(alive);
                });
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                if failing == 0 {
                    tracing::warn!(error = %e, "boot http accept failed");
                }
                failing += 1;
                // Out of descriptors (a storm's transfers free theirs within milliseconds): try
                // again soon, the connections wait in the accept queue. Anything else: back off
                // as axum::serve does.
                let pause = if out_of_descriptors(&e) {
                    FD_RETRY
                } else {
                    Duration::from_secs(1)
                };
                tokio::time::sleep(pause).await;
            }
        }
        if *stop.borrow() {
            break;
        }
    }
    drop(listener);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

async fn connection(
    mut tcp: TcpStream,
    state: &BootHttp,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    loop {
        match head::classify(&buf) {
            Head::Partial => {
                if stopping(&stop) {
                    return;
                }
                let read = tokio::select! {
                    r = tcp.read_buf(&mut buf) => r,
                    // Idle or part of a head read (no answer started): close on shutdown, so a
                    // client that never finishes its head cannot hold the drain.
                    _ = stop.changed() => return,
                };
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
            Head::Fast(req, len) => {
                buf.drain(..len);
                let reusable = match req.root {
                    Root::Assets => answer_file(&tcp, state, &req, &state.assets, "asset").await,
                    Root::Tftp => {
                        answer_file(&tcp, state, &req, &state.tftp_files, "tftp_file").await
                    }
                    Root::BootScript => {
                        let (status, body) = super::boot_script(state, req.query.clone()).await;
                        answer_text(&tcp, &req, status.as_u16(), &body).await
                    }
                    Root::InitScript => {
                        let (status, body) = super::init_script(state);
                        answer_text(&tcp, &req, status.as_u16(), &body).await
                    }
                };
                if !reusable || !req.keep_alive || stopping(&stop) {
                    let _ = close(&mut tcp).await;
                    return;
                }
            }
            Head::Malformed => {
                let date = httpdate::fmt_http_date(std::time::SystemTime::now());
                let resp = format!(
                    "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: {date}\r\n\r\n"
                );
                if send_all(&tcp, resp.as_bytes(), false).await.is_ok() {
                    let _ = close(&mut tcp).await;
                }
                return;
            }
            Head::Other => return hand_off(tcp, buf, router, stop).await,
        }
    }
}

async fn close(tcp: &mut TcpStream) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    tcp.shutdown().await
}

/// The rest of the connection, from the unanswered bytes in `buf` on, goes to hyper + axum.
async fn hand_off(tcp: TcpStream, buf: Vec<u8>, router: Router, mut stop: watch::Receiver<bool>) {
    let io = TokioIo::new(Prefixed {
        prefix: buf,
        pos: 0,
        inner: tcp,
    });
    let service = TowerToHyperService::new(router);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut signalled = stopping(&stop);
    if signalled {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(error = %e, "boot http connection ended");
                }
                return;
            }
            _ = stop.changed(), if !signalled => {
                signalled = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answer one file request; false when the connection cannot carry another request.
async fn answer_file(
    tcp: &TcpStream,
    s: &BootHttp,
    req: &FastRequest,
    files: &crate::files::BootFiles,
    kind: &'static str,
) -> bool {
    let opened = match rackboot_tftp::sanitize(&req.path) {
        Err(e) => Err((403, format!("refused: {e}\n"))),
        Ok(clean) => open_waiting(files, &clean).await.map_err(|e| match e {
            FileError::NotFound | FileError::NotAFile => (404, format!("{e}\n")),
            FileError::OutsideRoot => (403, format!("{e}\n")),
            FileError::Io(ref io) if out_of_descriptors(io) => {
                tracing::warn!(error = %io, file = %clean, "boot file not served: out of file descriptors");
                (503, "server busy: out of file descriptors, retry\n".to_string())
            }
            e => {
                let cause = std::error::Error::source(&e).map(|s| s.to_string());
                tracing::warn!(error = %e, cause = ?cause, file = %clean, "boot file not served");
                (500, format!("{e}\n"))
            }
        }),
    };
    let (file, len, mtime) = match opened {
        Ok(f) => f,
        Err((status, body)) => {
            count(s, kind, "refused");
            return answer_text(tcp, req, status, &body).await;
        }
    };
    count(s, kind, "ok");
    let cond = ranged::Conditions {
        range: req.range.as_deref(),
        if_range: req.if_range.as_deref(),
        if_none_match: req.if_none_match.as_deref(),
    };
    let plan = ranged::plan(req.head, &cond, len, mtime, "application/octet-stream");
    let head = response_head(req, plan.status, &plan.headers, 0);
    let Some((start, end)) = plan.body.filter(|(a, b)| b > a) else {
        return send_all(tcp, head.as_bytes(), false).await.is_ok();
    };
    // Corked like nginx's `tcp_nopush`: the kernel sends full segments only, until the uncork
    // after the last byte.
    let sock = socket2::SockRef::from(tcp);
    let _ = sock.set_cork(true);
    if send_all(tcp, head.as_bytes(), true).await.is_err() {
        return false;
    }
    let sent = send_file(tcp, &file, start, end).await.is_ok();
    // A connection that closes next stays corked, as nginx leaves it: the FIN then goes out with
    // the file's last partial segment. Uncorking first sends that segment alone and the FIN
    // after it: one more segment, and one more tail for a busy client to acknowledge before
    // the sender's tail-loss probe fires.
    if !sent || req.keep_alive {
        let _ = sock.set_cork(false);
    }
    sent
}

/// Open a boot file; while the process is out of file descriptors (a storm's downloads each
/// hold two), wait for transfers to finish and close theirs instead of failing at once.
async fn open_waiting(
    files: &crate::files::BootFiles,
    clean: &str,
) -> Result<(std::fs::File, u64, Option<std::time::SystemTime>), FileError> {
    let mut waited = Duration::ZERO;
    loop {
        match files.open(clean) {
            Err(FileError::Io(e)) if out_of_descriptors(&e) && waited < FD_WAIT => {
                tokio::time::sleep(FD_RETRY).await;
                waited += FD_RETRY;
            }
            r => return r,
        }
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE) | Some(nix::libc::ENFILE)
    )
}

async fn answer_text(tcp: &TcpStream, req: &FastRequest, status: u16, body: &str) -> bool {
    let headers = [
        ("content-type", "text/plain; charset=utf-8".to_string()),
        ("content-length", body.len().to_string()),
    ];
    let mut resp = response_head(req, status, &headers, body.len());
    if !req.head {
        resp.push_str(body);
    }
    // The connection closes next: corked, so that the FIN goes out with the last partial
    // segment (MSG_MORE alone holds it only until the ACK of the segments before it).
    if !req.keep_alive {
        let _ = socket2::SockRef::from(tcp).set_cork(true);
    }
    send_all(tcp, resp.as_bytes(), false).await.is_ok()
}

/// Status line and headers as hyper writes them: lower-case names, `connection` when the client
/// asked for something other than its version's default, then `date`.
fn response_head(
    req: &FastRequest,
    status: u16,
    headers: &[(&'static str, String)],
    body_room: usize,
) -> String {
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let version = if req.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    // One allocation for the head and the body that follows it.
    let mut out = String::with_capacity(256 + body_room);
    let _ = write!(out, "{version} {status} {reason}\r\n");
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    if req.connection_header {
        out.push_str(if req.keep_alive {
            "connection: keep-alive\r\n"
        } else {
            "connection: close\r\n"
        });
    }
    out.push_str("date: ");
    http_date(|d| out.push_str(d));
    out.push_str("\r\n\r\n");
    out
}

/// The current `date` header value, formatted once per second per thread (as hyper does).
fn http_date(f: impl FnOnce(&str)) {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut c) => {
            if c.0 != secs {
                *c = (secs, httpdate::fmt_http_date(now));
            }
            f(&c.1);
        }
        Err(_) => f(&httpdate::fmt_http_date(now)),
    });
}

/// Write all of `bytes`; `more`: the body follows at once (MSG_MORE: one segment, not two).
async fn send_all(tcp: &TcpStream, bytes: &[u8], more: bool) -> io::Result<()> {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    let flags = if more {
        // nix has no name for MSG_MORE.
        MsgFlags::from_bits_retain(nix::libc::MSG_MORE) | MsgFlags::MSG_NOSIGNAL
    } else {
        MsgFlags::MSG_NOSIGNAL
    };
    let mut off = 0;
    while off < bytes.len() {
        tcp.writable().await?;
        match tcp.try_io(tokio::io::Interest::WRITABLE, || {
            send(tcp.as_raw_fd(), &bytes[off..], flags).map_err(io::Error::from)
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `sendfile(2)` bytes `start..end` of `file` into the socket, waiting for writability.
///
/// A call that sends less than asked filled the socket buffer: like nginx, wait for room then
/// (the readiness is cleared) instead of calling again at once. That call would only fail with
/// EAGAIN, after the kernel had read the file's pages into its pipe for nothing (a third of the
/// CPU with hundreds of concurrent downloads). The kernel wakes us once ACKs free room (a short
/// send marks the socket as out of space); should that wake-up ever not come, the transfer is
/// tried again after [`STALL_RETRY`].
async fn send_file(tcp: &TcpStream, file: &std::fs::File, start: u64, end: u64) -> io::Result<()> {
    let mut offset = nix::libc::off64_t::try_from(start).map_err(io::Error::other)?;
    let end = nix::libc::off64_t::try_from(end).map_err(io::Error::other)?;
    while offset < end {
        let want = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(SENDFILE_CHUNK);
        let send = |offset: &mut nix::libc::off64_t| {
            nix::sys::sendfile::sendfile64(tcp.as_fd(), file.as_fd(), Some(offset), want)
                .map_err(io::Error::from)
        };
        let r = match tokio::time::timeout(STALL_RETRY, tcp.writable()).await {
            Ok(ready) => {
                ready?;
                tcp.try_io(tokio::io::Interest::WRITABLE, || match send(&mut offset) {
                    // Buffer full: make tokio wait for the next wake-up (the bytes are sent:
                    // `offset` moved).
                    Ok(n) if n > 0 && n < want => Err(io::ErrorKind::WouldBlock.into()),
                    r => r,
                })
            }
            // No wake-up for a long time: try anyway (a full buffer just says EAGAIN).
            Err(_) => send(&mut offset),
        };
        match r {
            // The file shrank under us: the promised length cannot be sent.
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => tokio::task::consume_budget().await,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A TCP stream whose first bytes were already read: they are read again first.
struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let rest = &this.prefix[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
