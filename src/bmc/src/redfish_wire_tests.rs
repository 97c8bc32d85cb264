//! The Redfish driver against a scripted HTTP server: what a BMC that wants an ETag, refuses
//! `BootSourceOverrideMode`, redirects, or offers only a power button gets sent.
#![allow(clippy::unwrap_used)]

use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex as StdMutex};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    if_match: Option<String>,
    body: String,
}

type Answer = (u16, Vec<(&'static str, String)>, String);

/// Serves each request with `answer(request, earlier requests)`, one connection per request.
fn bmc(
    answer: impl Fn(&Seen, &[Seen]) -> Answer + Send + 'static,
) -> (Redfish, Arc<StdMutex<Vec<Seen>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(StdMutex::new(Vec::<Seen>::new()));
    let seen_log = log.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let (mut len, mut if_match) = (0usize, None);
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap(),
                    "if-match" => if_match = Some(v.trim().to_string()),
                    _ => {}
                }
            }
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            let req = Seen {
                method,
                path,
                if_match,
                body: String::from_utf8(body).unwrap(),
            };
            let (status, headers, text) = {
                let mut log = seen_log.lock().unwrap();
                let a = answer(&req, &log);
                log.push(req);
                a
            };
            let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\ncontent-type: application/json\r\n", text.len());
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&text);
            let mut conn = conn;
            let _ = conn.write_all(out.as_bytes());
        }
    });
    let url = BmcUrl::parse(&format!("redfish+http://127.0.0.1:{port}")).unwrap();
    let creds = Credentials {
        username: "admin".into(),
        password: "pw".into(),
    };
    (
        Redfish::new(&url, creds, RedfishOptions::default()).unwrap(),
        log,
    )
}

fn system(power: &str, reset_types: &[&str]) -> String {
    json!({
        "@odata.id": "/redfish/v1/Systems/1",
        "PowerState": power,
        "Actions": {"#ComputerSystem.Reset": {
            "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            "ResetType@Redfish.AllowableValues": reset_types}}
    })
    .to_string()
}

fn members() -> Answer {
    (
        200,
        vec![],
        json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]}).to_string(),
    )
}

#[test]
fn boot_override_wants_the_body_etag_and_no_mode() {
    // An AMI-like BMC: the ETag only as @odata.etag, every PATCH without If-Match refused
    // with 412, and BootSourceOverrideMode refused with 400.
    let (rf, log) = bmc(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/redfish/v1/Systems") => members(),
        ("GET", _) => (
            200,
            vec![],
            json!({"@odata.etag": "W/\"1700\"", "PowerState": "Off"}).to_string(),
        ),
        ("PATCH", _) if req.if_match.is_none() => (412, vec![], String::new()),
        ("PATCH", _) if req.body.contains("BootSourceOverrideMode") => (400, vec![], String::new()),
        _ => (204, vec![], String::new()),
    });
    rf.blocking_pxe(PxeBoot {
        efi: true,
        persistent: false,
    })
    .unwrap();
    let patches: Vec<Seen> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "PATCH")
        .cloned()
        .collect();
    let last = patches.last().unwrap();
    assert_eq!(last.if_match.as_deref(), Some("W/\"1700\""));
    assert!(
        !last.body.contains("BootSourceOverrideMode"),
        "{}",
        last.body
    );
    assert!(last.body.contains("\"Pxe\""));
    assert_eq!(patches.len(), 3, "{patches:?}");
}

#[test]
fn a_redirect_is_not_success() {
    let (rf, log) = bmc(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/redfish/v1/Systems") => members(),
        ("GET", _) => (200, vec![], system("Off", &["On", "ForceOff"])),
        _ => (
            301,
            vec![("Location", "https://127.0.0.1/redfish/v1/Systems/1".into())],
            String::new(),
        ),
    });
    match rf.blocking_pxe(PxeBoot::default()) {
        Err(BmcError::Refused(why)) => assert!(why.contains("HTTP 301"), "{why}"),
        other => panic!("{other:?}"),
    }
    match rf.blocking_power(PowerAction::On) {
        Err(BmcError::Refused(why)) => assert!(why.contains("redirected"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(log.lock().unwrap().iter().any(|s| s.method == "POST"));
}

#[test]
fn the_power_button_is_pressed_only_to_change_the_state() {
    for (state, action, pressed) in [
        ("On", PowerAction::On, false),
        ("Off", PowerAction::On, true),
        ("Off", PowerAction::Off, false),
        ("On", PowerAction::Off, true),
        ("Off", PowerAction::Soft, false),
    ] {
        let (rf, log) = bmc(
            move |req, _| match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/redfish/v1/Systems") => members(),
                ("GET", _) => (200, vec![], system(state, &["PushPowerButton", "Nmi"])),
                _ => (204, vec![], String::new()),
            },
        );
        rf.blocking_power(action).unwrap();
        let posts: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "POST")
            .map(|s| s.body.clone())
            .collect();
        assert_eq!(
            posts.len(),
            usize::from(pressed),
            "{state} {action:?}: {posts:?}"
        );
        if pressed {
            assert!(posts[0].contains("PushPowerButton"));
        }
    }
}
