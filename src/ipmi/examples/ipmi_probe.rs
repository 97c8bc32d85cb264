//! Drive the sans-IO client with a blocking `std::net::UdpSocket`.
//!
//! ```text
//! cargo run --example ipmi_probe -- HOST PORT USER PASS [--suites 17,3] [ACTION...]
//! ACTION: devid | status | on | off | cycle | reset | soft | pxe | pxe-efi | getboot
//! ```
//! Default actions: `status getboot`. The session is closed at the end.

use std::io::Read;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use rackboot_ipmi::{
    BootFlags, ChassisControl, CipherSuite, Client, ClientConfig, Command, IpmiError, Response,
};

fn urandom(buf: &mut [u8]) {
    // A missing /dev/urandom is a broken host; a zeroed buffer would still work for a probe.
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(buf);
    }
}

fn run(client: &mut Client, sock: &UdpSocket, cmd: Command) -> Result<Response, IpmiError> {
    client.start(cmd, Instant::now())?;
    let mut buf = [0u8; 1024];
    loop {
        while let Some(d) = client.poll_transmit() {
            if let Err(e) = sock.send(&d) {
                eprintln!("send: {e}");
            }
        }
        if let Some(r) = client.poll_result() {
            return r;
        }
        let Some(deadline) = client.poll_timeout() else {
            return Err(IpmiError::BadReply(
                "client has neither a deadline nor a result",
            ));
        };
        let now = Instant::now();
        if deadline <= now {
            client.handle_timeout(now);
            continue;
        }
        let wait = (deadline - now).max(Duration::from_millis(1));
        if sock.set_read_timeout(Some(wait)).is_err() {
            return Err(IpmiError::BadReply("set_read_timeout failed"));
        }
        match sock.recv(&mut buf) {
            Ok(n) => client.handle_datagram(&buf[..n], Instant::now()),
            Err(_) => client.handle_timeout(Instant::now()),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: ipmi_probe HOST PORT USER PASS [--suites 17,3] [ACTION...]");
        std::process::exit(2);
    }
    let mut cfg = ClientConfig::new(args[2].clone(), args[3].clone());
    let mut actions: Vec<String> = Vec::new();
    let mut rest = args[4..].iter();
    while let Some(a) = rest.next() {
        if a == "--suites" {
            let list = rest.next().cloned().unwrap_or_default();
            cfg.suites = list
                .split(',')
                .filter_map(|s| match s {
                    "3" => Some(CipherSuite::SUITE_3),
                    "17" => Some(CipherSuite::SUITE_17),
                    _ => None,
                })
                .collect();
        } else {
            actions.push(a.clone());
        }
    }
    if actions.is_empty() {
        actions = vec!["status".into(), "getboot".into()];
    }
    eprintln!("config: {cfg:?}");
    let sock = match UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect(format!("{}:{}", args[0], args[1])).map(|_| s))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("socket: {e}");
            std::process::exit(1);
        }
    };
    let mut client = match Client::new(cfg, Box::new(urandom)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut failed = false;
    for a in &actions {
        let cmd = match a.as_str() {
            "devid" => Command::GetDeviceId,
            "status" => Command::GetChassisStatus,
            "on" => Command::ChassisControl(ChassisControl::PowerUp),
            "off" => Command::ChassisControl(ChassisControl::PowerDown),
            "cycle" => Command::ChassisControl(ChassisControl::PowerCycle),
            "reset" => Command::ChassisControl(ChassisControl::HardReset),
            "soft" => Command::ChassisControl(ChassisControl::SoftShutdown),
            "pxe" => Command::SetBootFlags(BootFlags::pxe_once(false)),
            "pxe-efi" => Command::SetBootFlags(BootFlags::pxe_once(true)),
            "getboot" => Command::GetBootFlags,
            other => {
                eprintln!("unknown action {other}");
                std::process::exit(2);
            }
        };
        let t = Instant::now();
        let r = run(&mut client, &sock, cmd);
        let suite = client.session_suite().map(|s| s.id);
        match r {
            Ok(r) => println!("{a}: ok in {:?} (suite {suite:?}): {r:?}", t.elapsed()),
            Err(e) => {
                failed = true;
                println!("{a}: FAILED in {:?}: {e}", t.elapsed());
            }
        }
    }
    match run(&mut client, &sock, Command::CloseSession) {
        Ok(r) => println!("close: {r:?}"),
        Err(e) => println!("close: FAILED: {e}"),
    }
    println!("stats: {:?}", client.stats());
    if failed {
        std::process::exit(1);
    }
}
