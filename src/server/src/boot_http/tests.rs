#![allow(clippy::unwrap_used)]

use super::*;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use rackboot_store::{Profile, Sealer, SledStore, Store};
use tower::ServiceExt;

pub(super) struct Env {
    _dir: tempfile::TempDir,
    pub(super) state: BootHttp,
    rx: mpsc::Receiver<Sighting>,
}

pub(super) fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let tftp = dir.path().join("assets/tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    std::fs::write(
        tftp.join("ipxe.efi"),
        (0..=255u8).cycle().take(10_000).collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("assets/agent")).unwrap();
    std::fs::write(dir.path().join("assets/agent/vmlinuz"), b"kernel").unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    let sealer = Arc::new(Sealer::open_or_create(&dir.path().join("secret.key")).unwrap());
    let (tx, rx) = mpsc::channel(16);
    let state = BootHttp {
        inventory: Inventory::new(store, sealer),
        metrics: Arc::new(Metrics::new()),
        tftp_files: Arc::new(BootFiles::new(tftp)),
        assets: Arc::new(BootFiles::new(dir.path().join("assets"))),
        cache: Arc::new(crate::asset_cache::AssetCache::new(
            dir.path().join("cache"),
        )),
        cached_files: Arc::new(BootFiles::new(dir.path().join("cache/sha256"))),
        sightings: tx,
        lifecycle: None,
        appliance: "10.99.0.2:50042".into(),
        agent: BootMode::Agent {
            kernel: "agent/vmlinuz".into(),
            initrds: vec!["agent/initrd.gz".into()],
            cmdline: "console=ttyS0".into(),
        },
        init_rounds: 3,
        recent_boots: Default::default(),
        templates: Default::default(),
    };
    Env {
        _dir: dir,
        state,
        rx,
    }
}

async fn get(
    e: &Env,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = router(e.state.clone())
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes().to_vec(),
    )
}

const Q: &str = "uuid=11111111-2222-3333-4444-555555555551&mac=52-54-00-99-00-10&arch=x86_64";

#[tokio::test]
async fn unknown_machine_gets_the_agent_and_is_recorded() {
    let mut e = env();
    let (status, _, body) = get(&e, "GET", &format!("/ipxe/boot.ipxe?{Q}"), &[]).await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("#!ipxe"));
    assert!(
        body.contains("http://10.99.0.2:50042/assets/agent/vmlinuz"),
        "{body}"
    );
    assert!(
        body.contains("rackboot.machine=11111111-2222-3333-4444-555555555551"),
        "{body}"
    );
    let s = e.rx.try_recv().unwrap();
    assert_eq!(s.mac, [0x52, 0x54, 0, 0x99, 0, 0x10]);
    assert!(s.note.unwrap().contains("agent"));
    // A per-boot token on the agent's command line, new for every boot script served.
    let token = |body: &str| {
        body.split_whitespace()
            .find_map(|w| w.strip_prefix("rackboot.token="))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no rackboot.token in {body}"))
    };
    let first = token(&body);
    assert!(first.len() == 32 && first.bytes().all(|b| b.is_ascii_hexdigit()));
    let (_, _, again) = get(&e, "GET", &format!("/ipxe/boot.ipxe?{Q}"), &[]).await;
    let second = token(&String::from_utf8(again).unwrap());
    assert_ne!(first, second);
    let id = "11111111-2222-3333-4444-555555555551";
    let tokens = e.state.inventory.agent_tokens();
    assert!(tokens.check(id, None, &second).is_some());
    assert!(tokens.check(id, None, &first).is_none());
}

#[tokio::test]
async fn stored_modes_are_rendered() {
    let e = env();
    let inv = &e.state.inventory;
    let m = inv
        .add(crate::api::NewMachine {
            macs: vec!["52:54:00:99:00:10".into()],
            boot_mode: Some(BootModeSetting::Disk {
                method: DiskMethod::Sanboot,
            }),
            ..Default::default()
        })
        .unwrap();
    let (status, _, body) = get(&e, "GET", &format!("/ipxe/boot.ipxe?{Q}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("sanboot --no-describe --drive 0x80"));

    let mut stored = inv.store().get_machine(&m.id).unwrap().unwrap();
    stored.boot_mode = Some(BootModeSetting::Disk {
        method: DiskMethod::Http404,
    });
    let stored = inv.store().update_machine(stored).unwrap();
    assert_eq!(
        get(&e, "GET", &format!("/ipxe/boot.ipxe?{Q}"), &[]).await.0,
        StatusCode::NOT_FOUND
    );

    let mut stored = stored;
    stored.boot_mode = Some(BootModeSetting::Cordoned {
        reason: "rack maintenance".into(),
    });
    let stored = inv.store().update_machine(stored).unwrap();
    let (status, _, body) = get(&e, "GET", &format!("/ipxe/boot.ipxe?{Q}"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("rack maintenance"));

    inv.store()
        .put_profile(&Profile {
            name: "demo".into(),
            kernel: Some("demo/vmlinuz".into()),
            initrds: vec!["demo/initrd.gz".into()],
            cmdline: "console=ttyS0 id=${machine} at=${appliance}".into(),
            script: None,
            sha256: Default::default(),
        })
        .unwrap();
    let mut stored = stored;
    stored.boot_mode = Some(BootModeSetting::Profile {
        profile: "demo".into(),
    });
    let stored = inv.store().update_machine(stored).unwrap();
    let (status, _, body) = get(&e, "GET", &format!("/ipxe/boot.ipxe?{Q}"), &[]).await;
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("http://10.99.0.2:50042/assets/demo/vmlinuz"),
        "{body}"
    );
    assert!(body.contains(&format!("id={}", stored.id)), "{body}");

    let mut stored = stored;
    stored.boot_mode = Some(BootModeSetting::Profile {
        profile: "missing".into(),
    });
    inv.store().update_machine(stored).unwrap();
    assert_eq!(
        get(&e, "GET", &format!("/ipxe/boot.ipxe?{Q}"), &[]).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn machines_without_a_real_uuid_are_known_by_mac() {
    let mut e = env();
    let ff = "ffffffff-ffff-ffff-ffff-ffffffffffff";
    e.state
        .inventory
        .add(crate::api::NewMachine {
            macs: vec!["52:54:00:99:00:10".into()],
            uuid: Some(ff.into()),
            boot_mode: Some(BootModeSetting::Disk {
                method: DiskMethod::Sanboot,
            }),
            ..Default::default()
        })
        .unwrap();
    let sanboot = "sanboot --no-describe --drive 0x80";
    // No SMBIOS (`${uuid}` unset): found by its MAC.
    let (status, _, body) = get(
        &e,
        "GET",
        "/ipxe/boot.ipxe?uuid=&mac=52-54-00-99-00-10&arch=arm64",
        &[],
    )
    .await;
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(sanboot), "{body}");
    // Another board with the same all-`f` UUID is not taken for the first one.
    let (status, _, body) = get(
        &e,
        "GET",
        &format!("/ipxe/boot.ipxe?uuid={ff}&mac=52-54-00-99-00-11&arch=x86_64"),
        &[],
    )
    .await;
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.contains(sanboot), "{body}");
    assert!(body.contains("rackboot.machine=m-525400990011"), "{body}");
    let seen = std::iter::from_fn(|| e.rx.try_recv().ok()).collect::<Vec<_>>();
    assert!(seen.iter().all(|s| s.uuid.is_none()), "{seen:?}");
    assert!(seen.iter().any(|s| s.mac == [0x52, 0x54, 0, 0x99, 0, 0x11]));
}

#[tokio::test]
async fn bad_queries_are_400_and_never_reach_the_script() {
    let e = env();
    for q in [
        "",
        "uuid=&arch=x86_64",
        "uuid=nope",
        "uuid=11111111-2222-3333-4444-555555555551%0Ashell",
        &format!("{Q}%0Ashell"),
    ] {
        let (status, _, body) = get(&e, "GET", &format!("/ipxe/boot.ipxe?{q}"), &[]).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{q}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test]
async fn init_script_chains_boot_ipxe() {
    let e = env();
    let (status, headers, body) = get(&e, "GET", "/ipxe/init.ipxe", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key(header::CONTENT_LENGTH));
    assert!(String::from_utf8_lossy(&body)
        .contains("http://10.99.0.2:50042/ipxe/boot.ipxe?uuid=${uuid}"));
}

#[tokio::test]
async fn files_support_range_head_etag_and_refuse_traversal() {
    let e = env();
    let (status, h, body) = get(&e, "GET", "/tftp/ipxe.efi", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), 10_000);
    assert_eq!(h[header::CONTENT_LENGTH], "10000");
    let tag = h[header::ETAG].to_str().unwrap().to_string();
    let (status, h, body) = get(
        &e,
        "GET",
        "/tftp/x86_64/ipxe.efi",
        &[("range", "bytes=256-511")],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h[header::CONTENT_RANGE], "bytes 256-511/10000");
    assert_eq!(body, (0..=255u8).collect::<Vec<u8>>());
    let (status, h, body) = get(&e, "HEAD", "/tftp/ipxe.efi", &[]).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert_eq!(h[header::CONTENT_LENGTH], "10000");
    assert_eq!(
        get(&e, "GET", "/tftp/ipxe.efi", &[("if-none-match", &tag)])
            .await
            .0,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get(&e, "GET", "/tftp/ipxe.efi", &[("range", "bytes=20000-")])
            .await
            .0,
        StatusCode::RANGE_NOT_SATISFIABLE
    );
    assert_eq!(
        get(&e, "GET", "/assets/agent/vmlinuz", &[]).await.2,
        b"kernel"
    );
    for bad in [
        "/assets/../secret.key",
        "/assets/agent/..%2F..%2Fsecret.key",
        "/tftp/..%2Fagent%2Fvmlinuz",
    ] {
        let status = get(&e, "GET", bad, &[]).await.0;
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
            "{bad}: {status}"
        );
    }
    assert_eq!(
        get(&e, "GET", "/tftp/nothere.efi", &[]).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_profiles_are_served_from_the_cache() {
    let e = env();
    let (url, hits) = crate::test_support::upstream(b"remote kernel");
    let inv = &e.state.inventory;
    inv.store()
        .put_profile(&Profile {
            name: "remote".into(),
            kernel: Some(url.clone()),
            initrds: vec![],
            cmdline: "console=ttyS0".into(),
            script: None,
            sha256: [(
                url.clone(),
                crate::asset_cache::hex_sha256(b"remote kernel"),
            )]
            .into_iter()
            .collect(),
        })
        .unwrap();
    inv.add(crate::api::NewMachine {
        macs: vec!["52:54:00:99:00:10".into()],
        boot_mode: Some(BootModeSetting::Profile {
            profile: "remote".into(),
        }),
        ..Default::default()
    })
    .unwrap();
    let (status, _, body) = get(&e, "GET", &format!("/ipxe/boot.ipxe?{Q}"), &[]).await;
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = crate::asset_cache::url_key(&url);
    assert!(
        body.contains(&format!("http://10.99.0.2:50042/cache/{key}")),
        "{body}"
    );
    assert!(
        !body.contains(&url),
        "machines must not fetch from upstream: {body}"
    );
    for _ in 0..2 {
        let (status, _, got) = get(&e, "GET", &format!("/cache/{key}"), &[]).await;
        assert_eq!(
            (status, got.as_slice()),
            (StatusCode::OK, &b"remote kernel"[..])
        );
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        get(&e, "GET", "/cache/not-a-key", &[]).await.0,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn only_inputs_that_can_change_the_machine_reach_the_lifecycle() {
    use rackboot_lifecycle::Input;
    use rackboot_store::model::MachineState as S;
    assert_eq!(
        super::lifecycle_inputs(S::Registered, "agent"),
        vec![Input::PxeSeen]
    );
    assert_eq!(
        super::lifecycle_inputs(S::Provisioning, "profile"),
        vec![Input::ProfileServed]
    );
    for (state, label) in [
        (S::Available, "agent"),
        (S::Provisioned, "disk"),
        (S::Discovered, "agent"),
        (S::Wiping, "agent"),
        (S::Provisioning, "agent"),
    ] {
        assert!(
            super::lifecycle_inputs(state, label).is_empty(),
            "{state:?}/{label}"
        );
    }
}

#[test]
fn hex_of_macs_and_uuids_parses_without_separators_and_exactly() {
    assert_eq!(
        parse_hex::<6>("52:54:00:99:00:1a"),
        Some([0x52, 0x54, 0, 0x99, 0, 0x1a])
    );
    assert_eq!(
        parse_hex::<6>("52-54-00-99-00-1A"),
        Some([0x52, 0x54, 0, 0x99, 0, 0x1a])
    );
    assert_eq!(
        parse_hex::<16>("11111111-2222-3333-4444-555555555551"),
        Some([
            0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0x55, 0x55, 0x55, 0x55,
            0x55, 0x51
        ])
    );
    assert_eq!(parse_hex::<6>("52:54:00:99:00"), None, "too short");
    assert_eq!(parse_hex::<6>("52:54:00:99:00:1a:2"), None, "too long");
    assert_eq!(parse_hex::<6>("52:54:00:99:00:1é"), None, "odd digit count");
    assert_eq!(parse_hex::<6>(""), None);
}

/// The boot query's strict MAC/UUID forms (rackboot_ipxe) and the store's lenient ones (operator
/// input) must agree wherever the strict one accepts: the machine a query names is looked up in
/// the store by the strict form.
#[test]
fn strict_query_forms_agree_with_the_store_forms() {
    use rackboot_store::model as store;
    let seeds = [
        "4C4C4544-0035-3010-8052-B4C04F4D4D32",
        "4c4c4544003530108052b4c04f4d4d32",
        "52-54-00-99-00-1A",
        "52:54:00:99:00:1a",
    ];
    let alphabet = b"0123456789abcdefABCDEF-:.";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut accepted = 0;
    for seed in seeds {
        for _ in 0..3000 {
            let mut b = seed.as_bytes().to_vec();
            for _ in 0..(x % 2 + 1) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % b.len() as u64) as usize;
                b[i] = alphabet[((x >> 32) % alphabet.len() as u64) as usize];
            }
            let s = String::from_utf8(b).unwrap();
            if let Some(m) = rackboot_ipxe::normalize_mac(&s) {
                assert_eq!(store::normalize_mac(&s), Some(m), "{s:?}");
                accepted += 1;
            }
            if let Some(u) = rackboot_ipxe::normalize_uuid(&s) {
                assert_eq!(store::normalize_uuid(&s), Some(u), "{s:?}");
                accepted += 1;
            }
        }
    }
    assert!(
        accepted > 1000,
        "the mutations must keep many inputs valid: {accepted}"
    );
}
