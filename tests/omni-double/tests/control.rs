//! The control HTTP API and the `omni-double` binary: drive Omni's side, read resources as
//! JSON, wipe and restore from the state file, and the kill / restart empty / restore cycle.

mod common;

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};

use common::{provider_client, start_with, Signer, PROVIDER};
use rackboot_omni_double::names::*;
use rackboot_proto::cosi::resource::GetRequest;
use serde_json::{json, Value};

fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let req = ureq::request(method, url);
    let resp = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match resp {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

#[test]
fn control_api_drives_omni_and_restores_from_the_state_file() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("omni.json");
    let f2 = file.clone();
    let (running, _k) = rt.block_on(start_with(move |c| c.state_file = Some(f2.clone())));
    let base = format!("http://{}", running.control_addr);
    let u = |p: &str| format!("{base}{p}");

    assert_eq!(call("GET", &u("/healthz"), None).0, 200);
    let (code, m) = call(
        "POST",
        &u("/control/machines"),
        Some(json!({"uuid": "11111111-2222-3333-4444-555555555555"})),
    );
    assert_eq!(code, 200);
    let id = m["metadata"]["id"].as_str().expect("id").to_string();
    assert_eq!(m["spec"]["acceptance_status"], "PENDING");
    assert_eq!(m["metadata"]["labels"][LABEL_PROVIDER_ID], PROVIDER);
    assert!(m["metadata"]["labels"].get(LABEL_ACCEPT_PENDING).is_some());

    let (_, m) = call("POST", &u(&format!("/control/machines/{id}/accept")), None);
    assert_eq!(m["spec"]["acceptance_status"], "ACCEPTED");
    assert!(m["metadata"]["labels"].get(LABEL_ACCEPT_PENDING).is_none());
    let alloc = json!({"talos_version": "v1.9.5", "extensions": ["siderolabs/iscsi-tools"], "cluster": "c1", "role": "worker"});
    let (_, m) = call(
        "POST",
        &u(&format!("/control/machines/{id}/allocate")),
        Some(alloc),
    );
    assert_eq!(m["spec"]["cluster_talos_version"], "v1.9.5");
    assert_eq!(m["spec"]["install_event_id"], 0);
    assert_eq!(m["metadata"]["labels"][LABEL_CLUSTER], "c1");
    let (_, m) = call(
        "POST",
        &u(&format!("/control/machines/{id}/installed")),
        None,
    );
    assert_eq!(m["spec"]["install_event_id"], 1);
    let (_, m) = call(
        "POST",
        &u(&format!("/control/machines/{id}/deallocate")),
        None,
    );
    assert_eq!(m["spec"]["cluster_talos_version"], "");
    assert_eq!(m["spec"]["wipe_id"].as_str().map(str::len), Some(36));
    assert!(m["metadata"]["labels"].get(LABEL_CLUSTER).is_none());
    let (_, m) = call("POST", &u(&format!("/control/machines/{id}/reboot")), None);
    assert_eq!(
        m["spec"]["requested_reboot_id"].as_str().map(str::len),
        Some(36)
    );
    let (_, m) = call(
        "POST",
        &u(&format!("/control/machines/{id}/power-off")),
        None,
    );
    assert_eq!(
        m["spec"]["power_off_request_id"].as_str().map(str::len),
        Some(36)
    );
    let (_, m) = call("POST", &u(&format!("/control/machines/{id}/cordon")), None);
    assert_eq!(m["spec"]["cordoned"], true);
    let (_, m) = call(
        "POST",
        &u(&format!("/control/machines/{id}/preferred-power")),
        Some(json!({"on": true})),
    );
    assert_eq!(m["spec"]["preferred_power_state"], "POWER_STATE_ON");
    let (_, m) = call(
        "POST",
        &u(&format!("/control/machines/{id}/extra-kernel-args")),
        Some(json!({"args": "console=ttyS0"})),
    );
    assert_eq!(m["spec"]["extra_kernel_args"], "console=ttyS0");
    let version = m["metadata"]["version"]
        .as_str()
        .expect("version")
        .to_string();
    assert_eq!(version, "10");

    let bmc = json!({"ipmi": {"address": "10.0.0.5", "port": 623, "username": "admin", "password": "s3cret"}});
    let (code, b) = call("PUT", &u(&format!("/control/bmc-configs/{id}")), Some(bmc));
    assert_eq!(code, 200);
    assert_eq!(b["spec"]["config"]["ipmi"]["address"], "10.0.0.5");
    assert_eq!(b["spec"]["config"]["ipmi"]["password"], "<redacted>");
    let join = json!({"kernel_args": ["siderolink.api=grpc://omni:8090?jointoken=x"], "config": "apiVersion: v1alpha1\n", "join_token": "x"});
    let (_, j) = call("PUT", &u("/control/join-config"), Some(join));
    assert_eq!(j["metadata"]["id"], PROVIDER);
    assert_eq!(
        j["spec"]["config"]["kernel_args"][0],
        "siderolink.api=grpc://omni:8090?jointoken=x"
    );

    let (code, _) = call("POST", &u("/control/machines/nope/accept"), None);
    assert_eq!(code, 404);
    let (code, list) = call(
        "GET",
        &u(&format!(
            "/control/resources/{NS_INFRA_PROVIDER}/{TYPE_INFRA_MACHINE}"
        )),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    // Omni loses everything; the state file is left alone; a restore brings it back exactly.
    let before = std::fs::read(&file).expect("state file written");
    let (_, st) = call("GET", &u("/control/status"), None);
    assert_eq!(st["persisting"], true);
    assert_eq!(call("POST", &u("/control/wipe"), None).0, 200);
    let machine_url = u(&format!(
        "/control/resources/{NS_INFRA_PROVIDER}/{TYPE_INFRA_MACHINE}/{id}"
    ));
    assert_eq!(call("GET", &machine_url, None).0, 404);
    assert_eq!(
        call("GET", &u("/control/status"), None).1["persisting"],
        false
    );
    call("POST", &u("/control/machines"), None);
    assert_eq!(
        std::fs::read(&file).expect("state file"),
        before,
        "no write while wiped"
    );
    let (code, r) = call("POST", &u("/control/restore"), None);
    assert_eq!(code, 200, "{r}");
    let (code, m) = call("GET", &machine_url, None);
    assert_eq!(code, 200);
    assert_eq!(m["metadata"]["version"], version);
    assert_eq!(m["spec"]["cordoned"], true);
    let (_, list) = call(
        "GET",
        &u(&format!(
            "/control/resources/{NS_INFRA_PROVIDER}/{TYPE_INFRA_MACHINE}"
        )),
        None,
    );
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "the machine joined while wiped is gone"
    );

    // Destroy honours finalizers.
    running.handle.teardown_machine(&id).expect("teardown");
    let (code, _) = call("DELETE", &machine_url, None);
    assert_eq!(code, 200);
    drop(running);
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(bin: &str, pubkey: &std::path::Path, state: &std::path::Path) -> (Proc, String, String) {
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--provider-id",
            PROVIDER,
        ])
        .arg("--public-key")
        .arg(pubkey)
        .arg("--state-file")
        .arg(state)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn omni-double");
    let mut line = String::new();
    let out = child.stdout.take().expect("stdout");
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("address line");
    let v: Value = serde_json::from_str(&line).expect("json line");
    let g = v["grpc"].as_str().expect("grpc").to_string();
    let c = v["control"].as_str().expect("control").to_string();
    (Proc(child), g, c)
}

#[test]
fn binary_keygen_serve_kill_restart_restore() {
    let bin = env!("CARGO_BIN_EXE_omni-double");
    let dir = tempfile::tempdir().expect("tempdir");
    let (keyf, pubf, state) = (
        dir.path().join("sa.key"),
        dir.path().join("sa.pub"),
        dir.path().join("state.json"),
    );
    let out = Command::new(bin)
        .args(["keygen", "--id", PROVIDER, "--out-key"])
        .arg(&keyf)
        .arg("--out-public")
        .arg(&pubf)
        .output()
        .expect("keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(info["name"], "infra-provider:rack-1");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&keyf).expect("key").permissions().mode() & 0o777,
        0o600
    );
    let sa_key = std::fs::read_to_string(&keyf).expect("key");

    let (p1, grpc, control) = serve(bin, &pubf, &state);
    let (_, m) = call("POST", &format!("http://{control}/control/machines"), None);
    let id = m["metadata"]["id"].as_str().expect("id").to_string();
    call(
        "POST",
        &format!("http://{control}/control/machines/{id}/accept"),
        None,
    );

    // A signed gRPC call with the key file's key sees the machine.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let get = |grpc: String| {
        let sa_key = sa_key.clone();
        let id = id.clone();
        rt.block_on(async move {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect");
            let mut c = rackboot_proto::cosi::resource::state_client::StateClient::with_interceptor(
                ch,
                common::SignInterceptor(Signer::from_service_account_key(&sa_key)),
            );
            c.get(GetRequest {
                namespace: NS_INFRA_PROVIDER.into(),
                r#type: TYPE_INFRA_MACHINE.into(),
                id,
                options: None,
            })
            .await
            .map(|r| {
                r.into_inner()
                    .resource
                    .and_then(|r| r.metadata)
                    .map(|m| m.version)
                    .unwrap_or_default()
            })
            .map_err(|s| s.code())
        })
    };
    assert_eq!(get(grpc.clone()).expect("signed get"), "2");
    drop(p1); // killed

    let (_p2, grpc, control) = serve(bin, &pubf, &state);
    assert_eq!(
        get(grpc.clone()).expect_err("restarted empty"),
        tonic::Code::NotFound
    );
    let (code, _) = call("POST", &format!("http://{control}/control/restore"), None);
    assert_eq!(code, 200);
    assert_eq!(get(grpc).expect("restored"), "2");
}

#[tokio::test]
async fn provider_client_helper_works_against_restored_state() {
    // The in-process restore also keeps the provider's own writes (private namespace).
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("s.json");
    let f2 = f.clone();
    let (running, k) = start_with(move |c| c.state_file = Some(f2.clone())).await;
    let mut c = provider_client(&running, &k).await;
    let ns = private_namespace(PROVIDER);
    let ty = format!("Leases.{PROVIDER}.infraprovider.sidero.dev");
    let r = rackboot_proto::cosi::resource::Resource {
        metadata: Some(rackboot_proto::cosi::resource::Metadata {
            namespace: ns.clone(),
            r#type: ty.clone(),
            id: "l1".into(),
            version: "undefined".into(),
            phase: PHASE_RUNNING.into(),
            ..Default::default()
        }),
        spec: Some(Default::default()),
    };
    c.create(rackboot_proto::cosi::resource::CreateRequest {
        resource: Some(r),
        options: None,
    })
    .await
    .expect("create");
    running.handle.wipe();
    assert!(running.handle.get(&ns, &ty, "l1").is_err());
    running.handle.restore().expect("restore");
    assert!(running.handle.get(&ns, &ty, "l1").is_ok());
}
