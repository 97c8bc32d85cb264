#![allow(clippy::unwrap_used)]

use super::*;
use crate::admin::{router, ROUTES};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOKEN: &str = "s3cret-admin-token-for-tests";
const BMC_PASSWORD: &str = "hunter2-bmc-Pa55";

struct Env {
    _dir: tempfile::TempDir,
    state: AdminState,
    app: Router,
}

fn env(loopback: bool) -> Env {
    let (dir, state) = crate::test_support::admin_state(loopback, TOKEN);
    let app = router(state.clone());
    Env {
        _dir: dir,
        state,
        app,
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(e: &Env, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut b = Request::builder().method(method).uri(uri);
    b = b.header("host", "127.0.0.1:8080");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = e
        .app
        .clone()
        .oneshot(b.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// Three machines: one with a BMC (and password), one named with markup, one bare.
async fn seed(e: &Env) -> Vec<String> {
    let auth = bearer();
    let mut ids = vec![];
    for body in [
        format!(
            r#"{{"name":"r1-u01","macs":["52:54:00:99:00:01"],"bmc":{{"url":"ipmi://127.0.0.1:9","username":"admin","password":"{BMC_PASSWORD}"}}}}"#
        ),
        r#"{"name":"<b>x</b>","macs":["52:54:00:99:00:02"]}"#.to_string(),
        r#"{"macs":["52:54:00:99:00:03"]}"#.to_string(),
    ] {
        let r = send(
            e,
            "POST",
            "/api/v1/machines",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids
}

async fn login(e: &Env) -> (String, String) {
    let r = send(
        e,
        "POST",
        "/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ],
        &format!("token={TOKEN}&next=%2Fevents"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers["location"], "/events");
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_string();
    let pair = cookie.split(';').next().unwrap().to_string();
    let page = send(e, "GET", "/", &[("cookie", &pair)], "").await;
    let csrf = page
        .body
        .split("<meta name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    (pair, csrf)
}

fn assert_no_secrets(what: &str, body: &str) {
    assert!(
        !body.contains(BMC_PASSWORD),
        "{what} leaks the BMC password"
    );
    assert!(!body.contains(TOKEN), "{what} leaks the admin token");
}

#[tokio::test]
async fn index_lists_machines_escaped_with_security_headers() {
    let e = env(true);
    let ids = seed(&e).await;
    let r = send(&e, "GET", "/", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'self'"));
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert_eq!(r.headers["cache-control"], "no-store");
    for id in &ids {
        assert!(
            r.body.contains(&format!("data-machine-id=\"{id}\"")),
            "{id}"
        );
    }
    assert!(r.body.contains("&lt;b&gt;x&lt;/b&gt;"), "{}", r.body);
    assert!(!r.body.contains("<b>x</b>"));
    assert!(r.body.contains("IPMI") && r.body.contains("ipmi://127.0.0.1:9"));
    assert!(r.body.contains("standalone mode"));
    assert!(!r.body.contains("<script>") && !r.body.contains("onclick"));
    // Not logged in: no CSRF token, no action buttons.
    assert!(!r.body.contains("csrf-token"));
    assert!(!r.body.contains("data-op=\"power\""));
    assert_no_secrets("/", &r.body);

    let r = send(&e, "GET", "/?state=registered", &[], "").await;
    assert_eq!(r.body.matches("<tr data-machine-id").count(), 3);
    let r = send(&e, "GET", "/?state=provisioned", &[], "").await;
    assert_eq!(r.body.matches("<tr data-machine-id").count(), 0);
    assert!(r.body.contains("No machine in this state"));

    for id in &ids {
        let r = send(&e, "GET", &format!("/machines/{id}"), &[], "").await;
        assert_eq!(r.status, StatusCode::OK, "{id}");
        assert!(r.body.contains("Event log"));
        assert!(r.body.contains("created"));
        assert_no_secrets("detail", &r.body);
        let r = send(&e, "GET", &format!("/api/v1/machines/{id}"), &[], "").await;
        assert_no_secrets("machine JSON", &r.body);
    }
    let r = send(&e, "GET", "/machines/nope", &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&e, "GET", "/events", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.matches("<tr data-seq=").count(), 3);
    assert_no_secrets("/events", &r.body);
    for path in ["/static/app.js", "/static/app.css"] {
        let r = send(&e, "GET", path, &[], "").await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn detail_page_shows_hardware_and_histories() {
    let e = env(true);
    let ids = seed(&e).await;
    let store = e.state.inventory.store().clone();
    let mut m = store.get_machine(&ids[0]).unwrap().unwrap();
    m.hardware = Some(serde_json::json!({"cpus": 8, "disks": [{"dev": "/dev<sda>"}]}));
    store.update_machine(m).unwrap();
    e.state
        .inventory
        .event(&ids[0], "boot", "served boot.ipxe (agent)");
    e.state
        .inventory
        .event(&ids[0], "power_error", "power on failed: <timeout>");
    let r = send(&e, "GET", &format!("/machines/{}", ids[0]), &[], "").await;
    assert!(r.body.contains("&quot;cpus&quot;: 8"), "{}", r.body);
    assert!(r.body.contains("/dev&lt;sda&gt;"));
    assert!(r.body.contains("power on failed: &lt;timeout&gt;"));
    let boot = r.body.split("id=\"boot-events\"").nth(1).unwrap();
    let boot = boot.split("</tbody>").next().unwrap();
    assert!(boot.contains("served boot.ipxe") && !boot.contains("power on failed"));
    let power = r.body.split("id=\"power-events\"").nth(1).unwrap();
    let power = power.split("</tbody>").next().unwrap();
    assert!(power.contains("power on failed") && !power.contains("served boot.ipxe"));
}

#[tokio::test]
async fn login_sets_a_strict_httponly_session_cookie() {
    let e = env(true);
    seed(&e).await;
    let r = send(
        &e,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=wrong",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get("set-cookie").is_none());
    assert!(r.body.contains("Wrong admin token"));

    let r = send(
        &e,
        "POST",
        "/login",
        &[("origin", "http://evil.example")],
        &format!("token={TOKEN}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "login CSRF");

    // An open redirect is not possible through `next`.
    let r = send(
        &e,
        "POST",
        "/login",
        &[],
        &format!("token={TOKEN}&next=%2F%2Fevil.example"),
    )
    .await;
    assert_eq!(r.headers["location"], "/");

    let r = send(&e, "POST", "/login", &[], &format!("token={TOKEN}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("rackboot_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            cookie.split("; ").any(|f| f == flag),
            "{cookie} lacks {flag}"
        );
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    // Behind a TLS-terminating proxy the cookie is Secure (and so is the logout's).
    let r = send(
        &e,
        "POST",
        "/login",
        &[("x-forwarded-proto", "https")],
        &format!("token={TOKEN}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let secure = r.headers["set-cookie"].to_str().unwrap();
    assert!(secure.split("; ").any(|f| f == "Secure"), "{secure}");
    let r = send(&e, "POST", "/logout", &[("x-forwarded-proto", "https")], "").await;
    let cleared = r.headers["set-cookie"].to_str().unwrap();
    assert!(
        cleared.contains("Max-Age=0") && cleared.ends_with("; Secure"),
        "{cleared}"
    );
    assert!(!cookie.contains(TOKEN));
    let pair = cookie.split(';').next().unwrap();
    let sid = pair.split('=').nth(1).unwrap();
    assert_eq!(sid.len(), 64);

    let page = send(&e, "GET", "/", &[("cookie", pair)], "").await;
    assert!(page.body.contains("<meta name=\"csrf-token\""));
    assert!(page.body.contains("data-op=\"power\""));
    assert!(page.body.contains("data-op=\"provision\""));
    assert!(
        !page.body.contains(sid),
        "the session id must stay in the cookie"
    );
    assert_no_secrets("/ logged in", &page.body);
}

#[tokio::test]
async fn cookie_writes_need_csrf_token_and_same_origin() {
    let e = env(true);
    let ids = seed(&e).await;
    let (cookie, csrf) = login(&e).await;
    let uri = format!("/api/v1/machines/{}/boot", ids[2]);
    let body = r#"{"mode":"disk"}"#;
    let json = ("content-type", "application/json");

    let r = send(&e, "PUT", &uri, &[json], body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "no credentials");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = send(
        &e,
        "PUT",
        &uri,
        &[json, ("cookie", "rackboot_session=forged")],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "unknown session");

    let r = send(&e, "PUT", &uri, &[json, ("cookie", &cookie)], body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "cookie without CSRF token");
    assert!(r.body.contains("\"error\""), "{}", r.body);
    let r = send(
        &e,
        "PUT",
        &uri,
        &[json, ("cookie", &cookie), ("x-csrf-token", "0000")],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "wrong CSRF token");
    let r = send(
        &e,
        "PUT",
        &uri,
        &[
            json,
            ("cookie", &cookie),
            ("x-csrf-token", &csrf),
            ("origin", "http://evil.example"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "foreign Origin");
    let r = send(
        &e,
        "PUT",
        &uri,
        &[
            json,
            ("cookie", &cookie),
            ("x-csrf-token", &csrf),
            ("sec-fetch-site", "cross-site"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "cross-site fetch");

    let ok = [
        json,
        ("cookie", cookie.as_str()),
        ("x-csrf-token", csrf.as_str()),
        ("origin", "http://127.0.0.1:8080"),
        ("sec-fetch-site", "same-origin"),
    ];
    let r = send(&e, "PUT", &uri, &ok, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("\"disk\""));
    // A power action on a machine without a BMC: the API's error reaches the page's JS.
    let r = send(
        &e,
        "POST",
        &format!("/api/v1/machines/{}/power", ids[2]),
        &ok,
        r#"{"action":"on"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("no BMC"), "{}", r.body);

    // Bearer still works without any CSRF token (not a browser credential).
    let r = send(&e, "PUT", &uri, &[json, ("authorization", &bearer())], body).await;
    assert_eq!(r.status, StatusCode::OK);

    // Log out: needs the CSRF token too; afterwards the cookie is worthless.
    let r = send(&e, "POST", "/logout", &[("cookie", &cookie)], "csrf=nope").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &e,
        "POST",
        "/logout",
        &[("cookie", &cookie)],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let r = send(&e, "PUT", &uri, &ok, body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn off_loopback_every_page_needs_a_login() {
    let e = env(false);
    let r = send(&e, "GET", "/", &[], "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/login");
    let r = send(&e, "GET", "/machines/x?y=1", &[], "").await;
    assert_eq!(r.headers["location"], "/login?next=%2Fmachines%2Fx%3Fy%3D1");
    for path in [
        "/api/v1/machines",
        "/api/v1/events",
        "/api/v1/events/stream",
        "/metrics",
    ] {
        let r = send(&e, "GET", path, &[], "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    for path in ["/login", "/healthz", "/static/app.js", "/static/app.css"] {
        let r = send(&e, "GET", path, &[], "").await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_no_secrets(path, &r.body);
    }
    let (cookie, _) = login(&e).await;
    for path in ["/", "/events", "/api/v1/machines"] {
        let r = send(&e, "GET", path, &[("cookie", &cookie)], "").await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }
    let r = send(&e, "GET", "/", &[("authorization", &bearer())], "").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn event_stream_sends_machine_events_with_the_machine() {
    let e = env(true);
    let ids = seed(&e).await;
    let req = Request::builder()
        .uri("/api/v1/events/stream")
        .body(Body::empty())
        .unwrap();
    let resp = e.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = resp.into_body();
    e.state.inventory.event(&ids[0], "boot", "served <agent>");
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !text.contains("\n\n") {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("an SSE frame")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.contains("event: machine-event\n"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["machine_id"], ids[0].as_str());
    assert_eq!(v["kind"], "boot");
    assert_eq!(v["message"], "served <agent>");
    assert_eq!(v["machine"]["name"], "r1-u01");
    assert_eq!(v["machine"]["bmc"]["password_set"], true);
    for k in ["seq", "at_ms"] {
        assert!(v[k].as_u64().unwrap() > 0, "{k}");
    }
    assert_no_secrets("SSE", &text);
}

#[test]
fn tail_events_is_newest_first() {
    let store: Arc<dyn Store> = Arc::new(rackboot_store::SledStore::temporary().unwrap());
    for i in 0..50 {
        let m = if i % 2 == 0 { "a" } else { "b" };
        store.append_event(m, "k", &format!("{i}")).unwrap();
    }
    let all = tail_events(&store, None, 20).unwrap();
    assert_eq!(all.len(), 20);
    assert_eq!(all[0].message, "49");
    assert_eq!(all[19].message, "30");
    let a = tail_events(&store, Some("a"), 30).unwrap();
    assert_eq!(a.len(), 25);
    assert_eq!(a[0].message, "48");
    assert_eq!(a[24].message, "0");
    assert_eq!(tail_events(&store, Some("c"), 5).unwrap(), vec![]);
    assert_eq!(tail_events(&store, Some("b"), 1).unwrap()[0].message, "49");
}

#[test]
fn counters_sum_by_kind() {
    let text = "# HELP x\nrackboot_dhcp_packets_total{kind=\"reply\",detail=\"7\"} 3\n\
                rackboot_dhcp_packets_total{kind=\"reply\",detail=\"0\"} 2\n\
                rackboot_dhcp_packets_total{kind=\"request\",detail=\"\"} 9\n\
                rackboot_dhcp_packets_totalx 5\nrackboot_tftp_sent_bytes_total 1024\n";
    let c = pages::counters(text, "rackboot_dhcp_packets_total");
    assert_eq!(c.len(), 2);
    assert_eq!(c["reply"], 5.0);
    assert_eq!(c["request"], 9.0);
    assert_eq!(
        pages::counters(text, "rackboot_tftp_sent_bytes_total")["total"],
        1024.0
    );
}

/// `openapi.json` documents exactly the routes of [`ROUTES`], and the router serves each of
/// them (and no other method on those paths).
#[tokio::test]
async fn openapi_documents_every_admin_route() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"));
    let mut documented = std::collections::BTreeSet::new();
    for (p, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            if m == "parameters" {
                continue;
            }
            assert!(op["responses"].is_object(), "{m} {p} has no responses");
            documented.insert((m.to_uppercase(), p.clone()));
        }
    }
    let served: std::collections::BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "not in openapi.json: {undocumented:?}"
    );
    assert!(
        extra.is_empty(),
        "in openapi.json but not served: {extra:?}"
    );
    // Every schema reference resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }

    let e = env(true);
    let ids = seed(&e).await;
    let auth = bearer();
    for p in served
        .iter()
        .map(|(_, p)| p.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let uri = p
            .replace("{id}", &ids[2])
            .replace("{name}", "nosuch")
            .replace("{action}", "accept");
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let listed = served.contains(&(m.to_string(), p.clone()));
            if m == "DELETE" && listed {
                continue; // do not remove the fixture
            }
            let req = Request::builder()
                .method(m)
                .uri(&uri)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let resp = e.app.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            if listed {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{m} {p}");
                if status == StatusCode::NOT_FOUND {
                    let b = resp.into_body().collect().await.unwrap().to_bytes();
                    let b = String::from_utf8_lossy(&b);
                    assert!(!b.contains("no such endpoint"), "{m} {p} not routed");
                }
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {p} is served but not listed"
                );
            }
        }
    }
}

#[test]
fn omni_panel_shows_the_link_and_escapes_omni_text() {
    let off = super::pages::omni_panel(&crate::omni_link::LinkStatus::default());
    assert!(off.contains("standalone mode"), "{off}");
    let on = super::pages::omni_panel(&crate::omni_link::LinkStatus {
        enabled: true,
        endpoint: "https://omni.example.com".into(),
        provider_id: "rack1".into(),
        connected: false,
        last_heartbeat_ms: None,
        last_error: Some("heartbeat: Unavailable: <script>".into()),
        infra_machines: 3,
    });
    assert!(
        on.contains("disconnected") && on.contains("rack1") && on.contains("never"),
        "{on}"
    );
    assert!(on.contains("<dd>3</dd>"), "{on}");
    assert!(
        !on.contains("<script>"),
        "Omni's error text must be escaped: {on}"
    );
}
