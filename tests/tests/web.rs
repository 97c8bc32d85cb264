//! The web status page in a real browser: `rackboot serve` on loopback with three machines,
//! headless Chromium for a screenshot (kept in the scratch dir as `web.png`), and ChromeDriver
//! (WebDriver over plain HTTP/JSON) to check the table, a live SSE update without a reload,
//! a power button that calls the API with the session cookie and CSRF token, and Provision:
//! a machine made available by a real agent (scratch file as its disk) is provisioned through
//! the profile picker, checked in the page's API calls and the machine's new state. Also greps
//! every page and JSON reply for the BMC password and the admin token. Loopback only.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::admin::Admin;
use rackboot_e2e::{free_port, wait_tcp, workspace_bin, Procs};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BMC_PASSWORD: &str = "Bmc-Pa55word-7f3e91";
const W3C_ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A minimal HTTP/1.1 client (one request per connection).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    // Read the head, then exactly Content-Length bytes (ChromeDriver answers `Connection:
    // close` but keeps the socket open), else chunks, else until EOF.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let head_end = |raw: &[u8]| raw.windows(4).position(|w| w == b"\r\n\r\n");
    while head_end(&raw).is_none() {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed in the HTTP head: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
    let split = head_end(&raw).unwrap();
    let lower = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let length = lower
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    loop {
        let body = &raw[split + 4..];
        let done = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut payload = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &payload[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_hex = String::from_utf8_lossy(&rest[..eol]);
            let size =
                usize::from_str_radix(size_hex.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        payload = out;
    }
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&payload).into_owned(),
    }
}

struct Server {
    port: u16,
    /// Boot HTTP, where the agent link (gRPC) is.
    boot_port: u16,
    token: String,
}

impl Server {
    fn get(&self, path: &str) -> Resp {
        http(self.port, "GET", path, &[], "")
    }
    fn call(&self, method: &str, path: &str, body: &str) -> Resp {
        let auth = format!("Bearer {}", self.token);
        http(
            self.port,
            method,
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    }
}

fn serve(p: &mut Procs) -> Server {
    let data = p.dir.join("data");
    let port = free_port();
    let boot_port = free_port();
    let admin = format!("127.0.0.1:{port}");
    p.spawn(
        "rackboot",
        Command::new(workspace_bin("rackboot")).args([
            "serve",
            "--data-dir",
            &data.display().to_string(),
            "--dhcp-mode",
            "off",
            "--tftp-listen",
            "off",
            "--boot-http-listen",
            &format!("127.0.0.1:{boot_port}"),
            "--admin-listen",
            &admin,
            "--log-level",
            "debug",
        ]),
    );
    assert!(
        wait_tcp(port, Duration::from_secs(30)),
        "rackboot did not start: {}",
        p.log("rackboot")
    );
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    Server {
        port,
        boot_port,
        token,
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    panic!("timed out waiting for {what}");
}

fn chrome_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

fn chromium_bin() -> &'static str {
    for b in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(b).exists() {
            return b;
        }
    }
    panic!("chromium is not installed: apt-get install -y --no-install-recommends chromium chromium-driver");
}

/// `chromium --headless --screenshot`, bounded in time; the child is killed by handle.
fn screenshot(dir: &Path, url: &str) -> std::path::PathBuf {
    let png = dir.join("web.png");
    let mut args = chrome_args(&dir.join("chrome-shot"));
    args.push(format!("--screenshot={}", png.display()));
    args.push(url.to_string());
    let log = std::fs::File::create(dir.join("chromium-screenshot.log")).unwrap();
    let mut child = Command::new(chromium_bin())
        .args(&args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "chromium --screenshot failed: {st}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium --screenshot hung");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    png
}

/// A WebDriver session; deleted (closing the browser) on drop, even when a check fails.
struct Browser {
    port: u16,
    session: String,
}

impl Browser {
    fn new(port: u16, profile: &Path) -> Self {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium_bin(), "args": chrome_args(profile)}
        }}});
        let r = http(
            port,
            "POST",
            "/session",
            &[("Content-Type", "application/json")],
            &caps.to_string(),
        );
        assert_eq!(r.status, 200, "new session: {}", r.body);
        let session = r.json()["value"]["sessionId"].as_str().unwrap().to_string();
        Browser { port, session }
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let r = http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            &[("Content-Type", "application/json")],
            &if body.is_null() {
                String::new()
            } else {
                body.to_string()
            },
        );
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        r.json()["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[W3C_ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("find {css}: {v}"))
            .to_string()
    }

    fn click(&self, css: &str) {
        let el = self.find(css);
        self.cmd("POST", &format!("/element/{el}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            json!({ "text": text }),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                &[],
                "",
            )
        });
    }
}

fn assert_no_secrets(s: &Server, what: &str, body: &str) {
    assert!(
        !body.contains(BMC_PASSWORD),
        "{what} leaks the BMC password"
    );
    assert!(!body.contains(&s.token), "{what} leaks the admin token");
}

const ROW_FIELD: &str = "const r = Array.from(document.querySelectorAll('#machines tr')).find(r => r.dataset.machineId === arguments[0]); return r ? r.querySelector('[data-field=\"' + arguments[1] + '\"]').textContent.trim() : null;";

#[test]
fn status_page_in_headless_chromium() {
    let mut p = Procs::new("web");
    // ChromeDriver cannot find Chromium's DevTools port when the profile path contains `..`.
    p.dir = std::fs::canonicalize(&p.dir).unwrap();
    let s = serve(&mut p);
    let base = format!("http://127.0.0.1:{}", s.port);

    // Three machines: one with a BMC password, one whose name is markup, one bare.
    let mut ids = vec![];
    for body in [
        json!({"name": "r1-u01", "macs": ["52:54:00:99:00:01"], "bmc": {"url": "ipmi://127.0.0.1:9", "username": "admin", "password": BMC_PASSWORD}}),
        json!({"name": "<b>x</b>", "macs": ["52:54:00:99:00:02"], "bmc": {"url": "redfish://127.0.0.1:9"}}),
        json!({"name": "r1-u03", "macs": ["52:54:00:99:00:03"], "uuid": "4c4c4544-0042-3510-8052-b4c04f4d3232"}),
    ] {
        let r = s.call("POST", "/api/v1/machines", &body.to_string());
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let bare = ids[2].clone();

    // No secret in any page or JSON reply; the markup name is escaped.
    let mut paths: Vec<String> = [
        "/",
        "/events",
        "/login",
        "/api/v1/machines",
        "/api/v1/events",
        "/api/v1/profiles",
        "/metrics",
        "/static/app.js",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for id in &ids {
        paths.push(format!("/machines/{id}"));
        paths.push(format!("/api/v1/machines/{id}"));
    }
    for path in &paths {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_no_secrets(&s, path, &r.body);
    }
    let index = s.get("/");
    assert!(index.body.contains("&lt;b&gt;x&lt;/b&gt;"));
    assert!(!index.body.contains("<b>x</b>"));
    assert!(index
        .header("content-security-policy")
        .unwrap()
        .starts_with("default-src 'self'"));
    assert_eq!(index.header("x-frame-options"), Some("DENY"));
    assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
    // Writes without credentials are refused; so is a cookie without its CSRF token.
    let r = http(
        s.port,
        "PUT",
        &format!("/api/v1/machines/{bare}/boot"),
        &[("Content-Type", "application/json")],
        r#"{"mode":"disk"}"#,
    );
    assert_eq!(r.status, 401);
    let login = http(
        s.port,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={}", s.token),
    );
    assert_eq!(login.status, 303);
    let cookie = login.header("set-cookie").unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains(&s.token));
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = http(
        s.port,
        "PUT",
        &format!("/api/v1/machines/{bare}/boot"),
        &[("Content-Type", "application/json"), ("Cookie", &pair)],
        r#"{"mode":"disk"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // Screenshot of the read-only loopback view.
    let png = screenshot(&p.dir, &format!("{base}/"));
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG"),
        "bad screenshot {}",
        png.display()
    );
    eprintln!("screenshot: {}", png.display());

    // WebDriver.
    let driver_port = free_port();
    p.spawn(
        "chromedriver",
        Command::new("chromedriver").args([
            format!("--port={driver_port}"),
            "--allowed-ips=127.0.0.1".to_string(),
        ]),
    );
    assert!(
        wait_tcp(driver_port, Duration::from_secs(30)),
        "chromedriver did not start: {}",
        p.log("chromedriver")
    );
    let b = Browser::new(driver_port, &p.dir.join("chrome-driver-profile"));
    b.go(&format!("{base}/"));
    let rows = b.js(
        "return document.querySelectorAll('#machines tr').length;",
        json!([]),
    );
    assert_eq!(rows, json!(3));
    let name = b.js(ROW_FIELD, json!([ids[1], "name"]));
    assert_eq!(name, json!("<b>x</b>"), "the markup name is text, not HTML");
    let load_id = b.js("return document.body.dataset.loadId;", json!([]));
    assert!(load_id.is_string());
    wait_until(
        "the event stream to connect",
        Duration::from_secs(15),
        || b.js("return document.body.dataset.live;", json!([])) == json!("yes"),
    );

    // A change through the API shows up in the row, without a reload.
    assert_eq!(
        b.js(ROW_FIELD, json!([bare, "boot_mode"])),
        json!("agent (default)")
    );
    let r = s.call(
        "PUT",
        &format!("/api/v1/machines/{bare}/boot"),
        r#"{"mode":"disk"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until(
        "the boot mode cell to update",
        Duration::from_secs(10),
        || b.js(ROW_FIELD, json!([bare, "boot_mode"])) == json!("disk"),
    );
    let last = b.js(ROW_FIELD, json!([bare, "last_event"]));
    assert!(last.as_str().unwrap().contains("boot_mode"), "{last}");
    // A new machine gets a new row.
    let r = s.call(
        "POST",
        "/api/v1/machines",
        &json!({"name": "r1-u04", "macs": ["52:54:00:99:00:04"]}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    wait_until("the new machine's row", Duration::from_secs(10), || {
        b.js(
            "return document.querySelectorAll('#machines tr').length;",
            json!([]),
        ) == json!(4)
    });
    assert_eq!(
        b.js("return document.body.dataset.loadId;", json!([])),
        load_id,
        "the page reloaded"
    );

    // Log in through the form; the session cookie is HttpOnly and SameSite=Strict.
    b.go(&format!("{base}/login"));
    b.type_into("input[name=token]", &s.token);
    b.click("button#login");
    wait_until("the logged-in page", Duration::from_secs(10), || {
        b.js(
            "return location.pathname === '/' && !!document.querySelector('meta[name=\"csrf-token\"]');",
            json!([]),
        ) == json!(true)
    });
    let cookies = b.cmd("GET", "/cookie", json!(null));
    let session = cookies
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rackboot_session")
        .unwrap_or_else(|| panic!("no session cookie in {cookies}"));
    assert_eq!(session["httpOnly"], json!(true));
    assert_eq!(session["sameSite"], json!("Strict"));
    assert_ne!(session["value"].as_str().unwrap(), s.token);
    let js_cookies = b.js("return document.cookie;", json!([]));
    assert!(!js_cookies.as_str().unwrap().contains("rackboot_session"));
    let html = b.js("return document.documentElement.outerHTML;", json!([]));
    assert!(!html
        .as_str()
        .unwrap()
        .contains(session["value"].as_str().unwrap()));
    assert_no_secrets(&s, "logged-in DOM", html.as_str().unwrap());

    // A power button (confirmed) on a machine without a BMC: the API's error shows.
    wait_until(
        "the event stream to reconnect",
        Duration::from_secs(15),
        || b.js("return document.body.dataset.live;", json!([])) == json!("yes"),
    );
    b.js("window.__confirmed = []; window.confirm = function (m) { window.__confirmed.push(m); return true; };", json!([]));
    b.click(&format!(
        "button.act[data-op=\"power\"][data-arg=\"on\"][data-machine=\"{bare}\"]"
    ));
    wait_until("the power error message", Duration::from_secs(15), || {
        b.js(
            "return document.getElementById('flash').textContent;",
            json!([]),
        )
        .as_str()
        .unwrap_or("")
        .contains("no BMC")
    });
    let flash = b.js(
        "return document.getElementById('flash').textContent;",
        json!([]),
    );
    assert!(flash.as_str().unwrap().contains("409"), "{flash}");
    let asked = b.js("return window.__confirmed;", json!([]));
    assert!(
        asked[0].as_str().unwrap().contains("Power on r1-u03"),
        "{asked}"
    );

    // A confirmed boot-mode button changes the machine (cookie + CSRF accepted).
    b.click(&format!(
        "button.act[data-op=\"boot\"][data-arg=\"agent\"][data-machine=\"{bare}\"]"
    ));
    wait_until("boot mode agent", Duration::from_secs(10), || {
        s.call("GET", &format!("/api/v1/machines/{bare}"), "")
            .json()["boot_mode"]["mode"]
            == json!("agent")
    });
    wait_until("the row to show it", Duration::from_secs(10), || {
        b.js(ROW_FIELD, json!([bare, "boot_mode"])) == json!("agent")
    });

    // Provision through the profile picker. First make the bare machine available: accept it
    // (no BMC, so nothing is powered) and let a real agent, run here with a scratch file as
    // its only disk and power actions answered without doing them, wipe it.
    for name in ["demo", "zz-other"] {
        let r = s.call(
            "PUT",
            &format!("/api/v1/profiles/{name}"),
            &json!({"name": name, "kernel": format!("{name}/vmlinuz"), "cmdline": "console=ttyS0"})
                .to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let logged_in_load = b.js("return document.body.dataset.loadId;", json!([]));
    let r = s.call("POST", &format!("/api/v1/machines/{bare}/accept"), "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    let disk = p.dir.join("agent-disk.img");
    std::fs::write(&disk, vec![0xa5u8; 4 << 20]).unwrap();
    // The agent's command line is the one its boot script carries (with the per-boot token
    // the agent link requires), as the agent image reads it from /proc/cmdline.
    let boot_http = Admin::new(format!("127.0.0.1:{}", s.boot_port).parse().unwrap(), "");
    let args = boot_http
        .agent_kernel_args("4c4c4544-0042-3510-8052-b4c04f4d3232", "52:54:00:99:00:03")
        .unwrap();
    assert!(args.contains("rackboot.token="), "{args}");
    let agent_token = args
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rackboot.token="))
        .unwrap()
        .to_string();
    std::fs::write(p.dir.join("agent-cmdline"), format!("{args}\n")).unwrap();
    p.spawn(
        "agent",
        Command::new(workspace_bin("rackboot-agent"))
            .arg("--appliance")
            .arg(format!("127.0.0.1:{}", s.boot_port))
            .args(["--machine", &bare, "--dry-run-power", "--heartbeat", "1"])
            .arg("--cmdline")
            .arg(p.dir.join("agent-cmdline"))
            .arg("--disk")
            .arg(&disk),
    );
    wait_until(
        "the agent's wipe: available",
        Duration::from_secs(60),
        || {
            s.call("GET", &format!("/api/v1/machines/{bare}"), "")
                .json()["state"]
                == json!("available")
        },
    );
    assert!(
        std::fs::read(&disk).unwrap()[..1 << 20]
            .iter()
            .all(|b| *b == 0),
        "the agent zeroed its disk's first MiB"
    );
    wait_until("the row to show available", Duration::from_secs(10), || {
        b.js(ROW_FIELD, json!([bare, "state"])) == json!("available")
    });
    // Record the page's API calls.
    b.js(
        "window.__calls = []; var f = window.fetch; window.fetch = function (u, o) { window.__calls.push({url: String(u), method: (o && o.method) || 'GET', body: (o && o.body) || null}); return f.apply(this, arguments); };",
        json!([]),
    );
    b.click(&format!(
        "button.act[data-op=\"provision\"][data-machine=\"{bare}\"]"
    ));
    wait_until("the profile picker", Duration::from_secs(10), || {
        b.js(
            "var s = document.getElementById('provision-profile'); return s && !s.disabled ? Array.prototype.map.call(s.options, function (o) { return o.value; }) : null;",
            json!([]),
        ) == json!(["demo", "zz-other"])
    });
    b.click("#provision-profile option[value=\"zz-other\"]");
    b.click("#provision-go");
    wait_until("provisioning", Duration::from_secs(10), || {
        s.call("GET", &format!("/api/v1/machines/{bare}"), "")
            .json()["state"]
            == json!("provisioning")
    });
    let m = s
        .call("GET", &format!("/api/v1/machines/{bare}"), "")
        .json();
    assert_eq!(
        m["boot_mode"],
        json!({"mode": "profile", "profile": "zz-other"}),
        "{m}"
    );
    let asked = b.js("return window.__confirmed;", json!([]));
    assert_eq!(
        asked.as_array().unwrap().last().unwrap(),
        &json!("Provision r1-u03 with profile zz-other?"),
        "{asked}"
    );
    let calls = b.js("return window.__calls;", json!([]));
    let provision: Vec<&Value> = calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["url"].as_str().unwrap().ends_with("/provision"))
        .collect();
    assert_eq!(provision.len(), 1, "{calls}");
    assert_eq!(
        provision[0]["url"],
        json!(format!("/api/v1/machines/{bare}/provision"))
    );
    assert_eq!(provision[0]["method"], json!("POST"));
    assert_eq!(provision[0]["body"], json!(r#"{"profile":"zz-other"}"#));
    assert!(calls
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["url"] == json!("/api/v1/profiles") && c["method"] == json!("GET")));
    wait_until(
        "the row to show provisioning",
        Duration::from_secs(10),
        || b.js(ROW_FIELD, json!([bare, "state"])) == json!("provisioning"),
    );
    wait_until("the done message", Duration::from_secs(10), || {
        b.js(
            "return document.getElementById('flash').textContent;",
            json!([]),
        )
        .as_str()
        .unwrap_or("")
        .contains("Provision r1-u03 with profile zz-other: done, now provisioning")
    });
    assert_eq!(
        b.js("return document.body.dataset.loadId;", json!([])),
        logged_in_load,
        "the page reloaded"
    );
    drop(b);

    // Secrets, last: a power call through the machine with the BMC password (its BMC does not
    // answer, so the error path runs too), then every log line (at debug level), page, API reply,
    // event and /metrics sample produced during the whole run, for the BMC password, the admin
    // token and the agent's per-boot token.
    let with_bmc = &ids[0];
    let r = s.call("GET", &format!("/api/v1/machines/{with_bmc}/power"), "");
    assert!(
        r.status >= 400,
        "power status of an unreachable BMC: {}",
        r.body
    );
    let mut seen: Vec<(String, String)> = vec![
        ("power error reply".into(), r.body.clone()),
        ("rackboot log".into(), p.log("rackboot")),
        ("agent log".into(), p.log("agent")),
    ];
    for path in paths.iter().chain(
        [
            format!("/api/v1/events?machine={bare}"),
            format!("/api/v1/events?machine={with_bmc}"),
            "/api/v1/events?limit=1000".to_string(),
        ]
        .iter(),
    ) {
        seen.push((format!("GET {path}"), s.call("GET", path, "").body));
    }
    assert!(
        seen.iter()
            .any(|(_, t)| t.contains("agent") && t.contains("connected")),
        "the sweep saw the agent's events"
    );
    assert!(
        seen.iter()
            .any(|(w, t)| w == "rackboot log" && t.contains("DEBUG")),
        "the log is at debug level"
    );
    for (what, text) in &seen {
        assert_no_secrets(&s, what, text);
        assert!(
            !text.contains(&agent_token),
            "{what} leaks the agent's boot token"
        );
    }
}
