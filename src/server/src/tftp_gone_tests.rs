//! Clients that leave mid-transfer: their transfers end on the ICMP port unreachable, at once,
//! in both transfer drivers (threaded and task) and in single-port mode, instead of retrying
//! into a closed port.

#![allow(clippy::unwrap_used)]
use super::tests::Running;
use super::*;
use std::time::Duration;

const BLKSIZE: usize = 512;
const WINDOW: u16 = 4;

/// A windowed client that leaves without a word: after the first window (`at_end` false), or
/// after receiving every block but without the final ACK (`at_end` true). Every transfer opens
/// before any client ACKs the OACK (`start`), so some run as tasks.
fn leave(server: SocketAddr, at_end: bool, start: &std::sync::Barrier) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let rrq = format!("\0\x01f.bin\0octet\0blksize\0{BLKSIZE}\0windowsize\0{WINDOW}\0");
    s.send_to(rrq.as_bytes(), server).unwrap();
    let mut buf = vec![0u8; BLKSIZE + 4];
    let oack = s.recv_from(&mut buf);
    // Past the barrier before anything can panic: the other clients must not wait forever.
    start.wait();
    let (n, from) = oack.unwrap();
    assert_eq!(&buf[..2], b"\0\x06", "OACK expected: {:?}", &buf[..n]);
    s.connect(from).unwrap();
    s.send(&[0, 4, 0, 0]).unwrap();
    let mut next = 1u16;
    loop {
        let n = s.recv(&mut buf).unwrap();
        if &buf[..2] != b"\0\x03" {
            continue; // the OACK again (the barrier took longer than its timeout)
        }
        let block = u16::from_be_bytes([buf[2], buf[3]]);
        if block != next {
            continue; // a tail probe or a resend
        }
        next += 1;
        if n - 4 < BLKSIZE || (!at_end && block == WINDOW) {
            return; // the socket closes: the next datagram to it is refused
        }
        #[allow(clippy::manual_is_multiple_of)] // is_multiple_of: Rust 1.87, MSRV 1.85
        let window_end = block % WINDOW == 0;
        if window_end {
            let b = block.to_be_bytes();
            s.send(&[0, 4, b[0], b[1]]).unwrap();
        }
    }
}

/// The sum of the transfer counters whose labels contain `labels`.
fn counter(text: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("rackboot_tftp_transfers_total{") && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_end_when_the_clients_port_is_closed() {
    let file = file();
    let svc = Running::start(&[("f.bin", &file)], true).await;
    // More than THREADED_TRANSFERS: 8 run as tasks.
    clients_leave(svc, THREADED_TRANSFERS + 8).await;
}

/// The single-port socket is not connected: it learns of the refusals from its error queue
/// (IP_RECVERR), and ends the same transfers the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_port_transfers_end_when_the_clients_port_is_closed() {
    let file = file();
    let svc = Running::start_single_port(&[("f.bin", &file)]).await;
    clients_leave(svc, 16).await;
}

fn file() -> Vec<u8> {
    (0..100_000u32).map(|i| (i % 249) as u8).collect()
}

/// `n` clients leave `svc`, half after the first window and half with every block but no
/// final ACK; every transfer must end as client_gone (failed, and unconfirmed), none by timeout.
async fn clients_leave(svc: Running, n: usize) {
    let addr = svc.addr;
    let start = Arc::new(std::sync::Barrier::new(n));
    tokio::task::spawn_blocking(move || {
        let clients: Vec<_> = (0..n)
            .map(|i| {
                let start = start.clone();
                std::thread::spawn(move || leave(addr, i % 2 == 1, &start))
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    })
    .await
    .unwrap();
    // Retrying into the closed ports would end these transfers as "timeout" after five full
    // timeouts (more than 5 s); the refusals end them as "client_gone" instead.
    let gone = "detail=\"client_gone\"";
    let mut text = String::new();
    for _ in 0..300 {
        text = svc.metrics.render(0);
        if counter(&text, gone) + counter(&text, "detail=\"timeout\"") >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    svc.stop().await;
    let half = (n / 2) as u64;
    assert_eq!(
        counter(&text, "kind=\"failed\",detail=\"client_gone\""),
        half,
        "left after the first window: failed, client gone\n{text}"
    );
    assert_eq!(
        counter(&text, "kind=\"unconfirmed\",detail=\"client_gone\""),
        half,
        "left with every block but no final ACK: unconfirmed\n{text}"
    );
    assert_eq!(counter(&text, "detail=\"timeout\""), 0, "{text}");
    assert_eq!(counter(&text, "kind=\"completed\""), 0, "{text}");
}
