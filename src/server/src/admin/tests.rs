#![allow(clippy::unwrap_used)]

use super::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Env {
    _dir: tempfile::TempDir,
    state: AdminState,
}

fn env(loopback: bool) -> Env {
    let (dir, state) = crate::test_support::admin_state(loopback, "s3cret-token");
    Env { _dir: dir, state }
}

async fn call(
    e: &Env,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, String) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b
        .body(
            body.map(|s| Body::from(s.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let resp = router(e.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

const NEW: &str = r#"{"name":"r1-u07","macs":["52:54:00:99:00:10"],"bmc":{"url":"ipmi://10.0.0.5:623","username":"admin","password":"hunter2-bmc"}}"#;

#[tokio::test]
async fn post_without_token_is_401_with_a_reason() {
    let e = env(true);
    let (status, body) = call(&e, "POST", "/api/v1/machines", None, Some(NEW)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"error\""), "{body}");
    let (status, _) = call(&e, "POST", "/api/v1/machines", Some("wrong"), Some(NEW)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, list) = call(&e, "GET", "/api/v1/machines", None, None).await;
    assert_eq!(list, "[]");
}

#[tokio::test]
async fn create_show_list_delete_without_leaking_the_password() {
    let e = env(true);
    let (status, body) = call(
        &e,
        "POST",
        "/api/v1/machines",
        Some("s3cret-token"),
        Some(NEW),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!body.contains("hunter2-bmc"), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], "m-525400990010");
    assert_eq!(v["state"], "registered");
    assert_eq!(v["bmc"]["password_set"], true);
    assert_eq!(v["bmc"]["url"], "ipmi://10.0.0.5:623");

    for key in ["m-525400990010", "r1-u07", "52-54-00-99-00-10"] {
        let (status, body) = call(&e, "GET", &format!("/api/v1/machines/{key}"), None, None).await;
        assert_eq!(status, StatusCode::OK, "{key}");
        assert!(!body.contains("hunter2-bmc"));
    }
    let (status, _) = call(
        &e,
        "POST",
        "/api/v1/machines",
        Some("s3cret-token"),
        Some(NEW),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, _) = call(&e, "DELETE", "/api/v1/machines/r1-u07", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &e,
        "DELETE",
        "/api/v1/machines/r1-u07",
        Some("s3cret-token"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&e, "GET", "/api/v1/machines/r1-u07", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, events) = call(
        &e,
        "GET",
        "/api/v1/events?machine=m-525400990010",
        None,
        None,
    )
    .await;
    assert!(
        events.contains("created") && events.contains("removed"),
        "{events}"
    );
}

#[tokio::test]
async fn credentials_in_the_bmc_url_are_moved_out_and_sealed() {
    let e = env(true);
    let body = r#"{"macs":["52:54:00:99:00:11"],"bmc":{"url":"redfish://root:pa55word@10.0.0.6"}}"#;
    let (status, body) = call(
        &e,
        "POST",
        "/api/v1/machines",
        Some("s3cret-token"),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!body.contains("pa55word"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["bmc"]["url"], "redfish://10.0.0.6");
    assert_eq!(v["bmc"]["username"], "root");
}

#[tokio::test]
async fn bad_requests_say_why() {
    let e = env(true);
    for (body, needle) in [
        (r#"{"macs":["nope"]}"#, "macs"),
        (r#"{"name":"x"}"#, "MAC"),
        (
            r#"{"macs":["52:54:00:99:00:12"],"bmc":{"url":"telnet://x"}}"#,
            "bmc.url",
        ),
        (
            r#"{"macs":["52:54:00:99:00:12"],"colour":"red"}"#,
            "unknown field",
        ),
        ("not json", "invalid machine JSON"),
    ] {
        let (status, resp) = call(
            &e,
            "POST",
            "/api/v1/machines",
            Some("s3cret-token"),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(resp.contains(needle), "{body} → {resp}");
    }
}

#[tokio::test]
async fn non_loopback_needs_the_token_for_reads_too() {
    let e = env(false);
    assert_eq!(
        call(&e, "GET", "/api/v1/machines", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&e, "GET", "/metrics", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&e, "GET", "/api/v1/machines", Some("s3cret-token"), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&e, "GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_has_build_info_uptime_and_store_size() {
    let e = env(true);
    let (status, body) = call(&e, "GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "rackboot_build_info",
        "rackboot_uptime_seconds",
        "rackboot_store_size_bytes",
    ] {
        assert!(body.contains(name), "{name} missing in {body}");
    }
}

#[tokio::test]
async fn power_poll_polls_every_bmc_once_and_needs_the_token() {
    let e = env(true);
    // Two BMCs nothing listens on (connection refused at once) and a machine without a BMC.
    for (name, mac, bmc) in [
        ("a", "52:54:00:99:00:21", Some("redfish+http://127.0.0.1:1")),
        ("b", "52:54:00:99:00:22", Some("redfish+http://127.0.0.1:1")),
        ("c", "52:54:00:99:00:23", None),
    ] {
        let mut m = serde_json::json!({"name": name, "macs": [mac]});
        if let Some(url) = bmc {
            m["bmc"] = serde_json::json!({"url": url, "username": "u", "password": "p"});
        }
        let (status, body) = call(
            &e,
            "POST",
            "/api/v1/machines",
            Some("s3cret-token"),
            Some(&m.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, _) = call(&e, "POST", "/api/v1/power/poll", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&e, "POST", "/api/v1/power/poll", Some("s3cret-token"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&v["machines"], &v["ok"], &v["failed"]),
        (&2.into(), &0.into(), &2.into()),
        "{v}"
    );
    assert!(v["duration_ms"].as_f64().unwrap() >= 0.0, "{v}");
    // Each failure is recorded with its machine.
    for name in ["a", "b"] {
        let (_, body) = call(&e, "GET", &format!("/api/v1/machines/{name}"), None, None).await;
        let m: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(m["bmc"]["health"]["reachable"], false, "{m}");
    }
}
