//! COSI state rules and Omni's provider access rules, through the signed gRPC API.

mod common;

use std::collections::HashMap;

use common::{provider_client, start, Client, PROVIDER};
use prost::Message as _;
use rackboot_omni_double::names::*;
use rackboot_omni_double::server::spec_of;
use rackboot_proto::cosi::resource::*;
use rackboot_proto::omni::specs::{
    InfraMachineSpec, InfraMachineStatusSpec, InfraProviderStatusSpec,
};
use tokio_stream::StreamExt as _;
use tonic::Code;

fn res(ns: &str, ty: &str, id: &str, version: &str, spec: Spec) -> Resource {
    Resource {
        metadata: Some(Metadata {
            namespace: ns.into(),
            r#type: ty.into(),
            id: id.into(),
            version: version.into(),
            phase: PHASE_RUNNING.into(),
            ..Default::default()
        }),
        spec: Some(spec),
    }
}

fn status_res(id: &str, version: &str, ready: bool) -> Resource {
    let spec = InfraMachineStatusSpec {
        ready_to_use: ready,
        ..Default::default()
    };
    res(
        NS_INFRA_PROVIDER,
        TYPE_INFRA_MACHINE_STATUS,
        id,
        version,
        spec_of(&spec),
    )
}

async fn create(c: &mut Client, r: Resource, owner: &str) -> Result<Resource, tonic::Status> {
    c.create(CreateRequest {
        resource: Some(r),
        options: Some(CreateOptions {
            owner: owner.into(),
        }),
    })
    .await
    .map(|r| r.into_inner().resource.unwrap_or_default())
}

async fn update(
    c: &mut Client,
    r: Resource,
    owner: &str,
    phase: Option<&str>,
) -> Result<Resource, tonic::Status> {
    c.update(UpdateRequest {
        new_resource: Some(r),
        options: Some(UpdateOptions {
            owner: owner.into(),
            expected_phase: phase.map(str::to_string),
        }),
    })
    .await
    .map(|r| r.into_inner().resource.unwrap_or_default())
}

async fn get(c: &mut Client, ns: &str, ty: &str, id: &str) -> Result<Resource, tonic::Status> {
    c.get(GetRequest {
        namespace: ns.into(),
        r#type: ty.into(),
        id: id.into(),
        options: None,
    })
    .await
    .map(|r| r.into_inner().resource.unwrap_or_default())
}

async fn destroy(
    c: &mut Client,
    ns: &str,
    ty: &str,
    id: &str,
    owner: &str,
) -> Result<(), tonic::Status> {
    c.destroy(DestroyRequest {
        namespace: ns.into(),
        r#type: ty.into(),
        id: id.into(),
        options: Some(DestroyOptions {
            owner: owner.into(),
        }),
    })
    .await
    .map(|_| ())
}

async fn list(c: &mut Client, ns: &str, ty: &str, opts: Option<ListOptions>) -> Vec<Resource> {
    let mut s = c
        .list(ListRequest {
            namespace: ns.into(),
            r#type: ty.into(),
            options: opts,
        })
        .await
        .expect("list")
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = s.next().await {
        out.push(r.expect("item").resource.unwrap_or_default());
    }
    out
}

fn md(r: &Resource) -> Metadata {
    r.metadata.clone().unwrap_or_default()
}

#[tokio::test]
async fn create_versions_and_conflicts() {
    let (running, k) = start().await;
    let mut c = provider_client(&running, &k).await;
    let stored = create(&mut c, status_res("m1", "undefined", false), "rackboot")
        .await
        .expect("create");
    let m = md(&stored);
    assert_eq!(m.version, "1");
    assert_eq!(m.owner, "rackboot");
    assert_eq!(
        m.labels.get(LABEL_PROVIDER_ID).map(String::as_str),
        Some(PROVIDER)
    );
    assert!(m.created.is_some());

    let e = create(&mut c, status_res("m1", "undefined", false), "rackboot")
        .await
        .expect_err("dup");
    assert_eq!(e.code(), Code::AlreadyExists);

    // Update at the stored version bumps it.
    let mut next = stored.clone();
    next.spec = status_res("m1", "1", true).spec;
    let v2 = update(&mut c, next.clone(), "rackboot", None)
        .await
        .expect("update");
    assert_eq!(md(&v2).version, "2");
    // The same (now stale) version again: FailedPrecondition.
    let e = update(&mut c, next.clone(), "rackboot", None)
        .await
        .expect_err("stale");
    assert_eq!(e.code(), Code::FailedPrecondition);
    // Version "undefined" is a conflict too.
    let mut undef = v2.clone();
    undef.metadata.as_mut().expect("md").version = "undefined".into();
    assert_eq!(
        update(&mut c, undef, "rackboot", None)
            .await
            .expect_err("undefined")
            .code(),
        Code::FailedPrecondition
    );
    // Wrong owner: PermissionDenied (checked before the version).
    let e = update(&mut c, v2.clone(), "someone", None)
        .await
        .expect_err("owner");
    assert_eq!(e.code(), Code::PermissionDenied);
    // Expected phase mismatch: InvalidArgument.
    let e = update(&mut c, v2.clone(), "rackboot", Some(PHASE_TEARING_DOWN))
        .await
        .expect_err("phase");
    assert_eq!(e.code(), Code::InvalidArgument);
    let v3 = update(&mut c, v2.clone(), "rackboot", Some(PHASE_RUNNING))
        .await
        .expect("phase ok");
    assert_eq!(md(&v3).version, "3");
    let spec =
        InfraMachineStatusSpec::decode(v3.spec.clone().unwrap_or_default().proto_spec.as_slice())
            .expect("spec");
    assert!(spec.ready_to_use);

    // Get returns the stored resource.
    let got = get(&mut c, NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE_STATUS, "m1")
        .await
        .expect("get");
    assert_eq!(got, v3);
    let e = get(&mut c, NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE_STATUS, "nope")
        .await
        .expect_err("missing");
    assert_eq!(e.code(), Code::NotFound);
    let e = update(&mut c, status_res("nope", "1", true), "rackboot", None)
        .await
        .expect_err("missing");
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn finalizers_block_destroy_and_teardown_reports_readiness() {
    let (running, k) = start().await;
    let mut c = provider_client(&running, &k).await;
    let mut r = status_res("m1", "undefined", false);
    r.metadata.as_mut().expect("md").finalizers = vec!["rackboot".into()];
    let stored = create(&mut c, r, "").await.expect("create");

    let e = destroy(
        &mut c,
        NS_INFRA_PROVIDER,
        TYPE_INFRA_MACHINE_STATUS,
        "m1",
        "other",
    )
    .await
    .expect_err("owner");
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = destroy(
        &mut c,
        NS_INFRA_PROVIDER,
        TYPE_INFRA_MACHINE_STATUS,
        "m1",
        "",
    )
    .await
    .expect_err("finalizer");
    assert_eq!(e.code(), Code::FailedPrecondition);

    let td = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.teardown(TeardownRequest {
                namespace: NS_INFRA_PROVIDER.into(),
                r#type: TYPE_INFRA_MACHINE_STATUS.into(),
                id: "m1".into(),
                options: Some(TeardownOptions {
                    owner: String::new(),
                }),
            })
            .await
            .map(|r| r.into_inner().destroy_ready)
        }
    };
    assert!(!td(&mut c).await.expect("teardown"));
    let now = get(&mut c, NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE_STATUS, "m1")
        .await
        .expect("get");
    assert_eq!(md(&now).phase, PHASE_TEARING_DOWN);
    assert_eq!(md(&now).version, "2");
    // Expected phase running no longer holds.
    let e = update(&mut c, now.clone(), "", Some(PHASE_RUNNING))
        .await
        .expect_err("phase");
    assert_eq!(e.code(), Code::InvalidArgument);

    let mut done = now.clone();
    done.metadata.as_mut().expect("md").finalizers.clear();
    update(&mut c, done, "", None)
        .await
        .expect("drop finalizer");
    assert!(td(&mut c).await.expect("teardown again"));
    destroy(
        &mut c,
        NS_INFRA_PROVIDER,
        TYPE_INFRA_MACHINE_STATUS,
        "m1",
        "",
    )
    .await
    .expect("destroy");
    assert_eq!(
        get(&mut c, NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE_STATUS, "m1")
            .await
            .expect_err("gone")
            .code(),
        Code::NotFound
    );
    let _ = stored;
}

#[tokio::test]
async fn provider_sees_only_its_own_resources() {
    let (running, k) = start().await;
    let h = running.handle.clone();
    let mine = h.machine_joins(None).expect("join");
    let theirs = h.machine_joins_for("rack-2", None).expect("join other");
    let mut c = provider_client(&running, &k).await;

    let all = list(&mut c, NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, None).await;
    let ids: Vec<_> = all.iter().map(|r| md(r).id).collect();
    assert_eq!(ids, vec![mine.clone()]);
    let e = get(&mut c, NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, &theirs)
        .await
        .expect_err("hidden");
    assert_eq!(e.code(), Code::NotFound);
    let m = get(&mut c, NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, &mine)
        .await
        .expect("mine");
    let spec =
        InfraMachineSpec::decode(m.spec.unwrap_or_default().proto_spec.as_slice()).expect("spec");
    assert_eq!(spec.acceptance_status, 0, "PENDING");
    assert!(md(&running
        .handle
        .get(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, &mine)
        .expect("m"))
    .labels
    .contains_key(LABEL_ACCEPT_PENDING));

    // Even a provider's own write cannot drop or change the provider label.
    let mut r = create(&mut c, status_res("s1", "undefined", false), "")
        .await
        .expect("create");
    r.metadata
        .as_mut()
        .expect("md")
        .labels
        .insert(LABEL_PROVIDER_ID.into(), "rack-2".into());
    let stored = update(&mut c, r, "", None).await.expect("update");
    assert_eq!(
        md(&stored)
            .labels
            .get(LABEL_PROVIDER_ID)
            .map(String::as_str),
        Some(PROVIDER)
    );
}

#[tokio::test]
async fn list_label_and_id_queries() {
    let (running, k) = start().await;
    let mut c = provider_client(&running, &k).await;
    for (id, l) in [("a-1", "x"), ("a-2", "y"), ("b-1", "x")] {
        let mut r = status_res(id, "undefined", false);
        r.metadata.as_mut().expect("md").labels =
            HashMap::from([("zone".to_string(), l.to_string())]);
        create(&mut c, r, "").await.expect("create");
    }
    let q = |op: label_term::Operation, v: &[&str], invert: bool| ListOptions {
        label_query: vec![LabelQuery {
            terms: vec![LabelTerm {
                key: "zone".into(),
                op: op as i32,
                value: v.iter().map(|s| s.to_string()).collect(),
                invert,
            }],
        }],
        id_query: None,
    };
    let ids = |v: Vec<Resource>| v.iter().map(|r| md(r).id).collect::<Vec<_>>();
    let eq = list(
        &mut c,
        NS_INFRA_PROVIDER,
        TYPE_INFRA_MACHINE_STATUS,
        Some(q(label_term::Operation::Equal, &["x"], false)),
    )
    .await;
    assert_eq!(ids(eq), vec!["a-1", "b-1"]);
    let neq = list(
        &mut c,
        NS_INFRA_PROVIDER,
        TYPE_INFRA_MACHINE_STATUS,
        Some(q(label_term::Operation::Equal, &["x"], true)),
    )
    .await;
    assert_eq!(ids(neq), vec!["a-2"]);
    let inn = list(
        &mut c,
        NS_INFRA_PROVIDER,
        TYPE_INFRA_MACHINE_STATUS,
        Some(q(label_term::Operation::In, &["y", "z"], false)),
    )
    .await;
    assert_eq!(ids(inn), vec!["a-2"]);
    let mut re = q(label_term::Operation::Exists, &[], false);
    re.id_query = Some(IdQuery {
        regexp: "^a-".into(),
    });
    assert_eq!(
        ids(list(
            &mut c,
            NS_INFRA_PROVIDER,
            TYPE_INFRA_MACHINE_STATUS,
            Some(re)
        )
        .await),
        vec!["a-1", "a-2"]
    );
}

#[tokio::test]
async fn provider_may_only_touch_finalizers_of_infra_machines() {
    let (running, k) = start().await;
    let id = running.handle.machine_joins(None).expect("join");
    let mut c = provider_client(&running, &k).await;
    let m = get(&mut c, NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, &id)
        .await
        .expect("get");
    let owner = md(&m).owner;
    assert_eq!(owner, OWNER_INFRA_MACHINE);

    // Adding a finalizer with the stored owner: allowed.
    let mut fin = m.clone();
    fin.metadata
        .as_mut()
        .expect("md")
        .finalizers
        .push("rackboot".into());
    let with_fin = update(&mut c, fin.clone(), &owner, None)
        .await
        .expect("add finalizer");
    assert_eq!(md(&with_fin).finalizers, vec!["rackboot".to_string()]);
    // With the wrong owner the COSI owner check refuses it.
    let e = update(&mut c, with_fin.clone(), "", None)
        .await
        .expect_err("owner");
    assert_eq!(e.code(), Code::PermissionDenied);

    // Spec change: PermissionDenied.
    let mut spec = InfraMachineSpec::decode(
        with_fin
            .spec
            .clone()
            .unwrap_or_default()
            .proto_spec
            .as_slice(),
    )
    .expect("spec");
    spec.acceptance_status = 1;
    let mut bad = with_fin.clone();
    bad.spec = Some(spec_of(&spec));
    assert_eq!(
        update(&mut c, bad, &owner, None)
            .await
            .expect_err("spec")
            .code(),
        Code::PermissionDenied
    );
    // Label change: PermissionDenied.
    let mut bad = with_fin.clone();
    bad.metadata
        .as_mut()
        .expect("md")
        .labels
        .remove(LABEL_ACCEPT_PENDING);
    assert_eq!(
        update(&mut c, bad, &owner, None)
            .await
            .expect_err("label")
            .code(),
        Code::PermissionDenied
    );
    // Create and destroy: PermissionDenied.
    let r = res(
        NS_INFRA_PROVIDER,
        TYPE_INFRA_MACHINE,
        "new",
        "undefined",
        spec_of(&InfraMachineSpec::default()),
    );
    assert_eq!(
        create(&mut c, r, "").await.expect_err("create").code(),
        Code::PermissionDenied
    );
    assert_eq!(
        destroy(&mut c, NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, &id, &owner)
            .await
            .expect_err("destroy")
            .code(),
        Code::PermissionDenied
    );
    // Removing its finalizer again: allowed.
    let mut nofin = with_fin.clone();
    nofin.metadata.as_mut().expect("md").finalizers.clear();
    update(&mut c, nofin, &owner, None)
        .await
        .expect("remove finalizer");
    // Omni's own changes still bump the version the provider must send next.
    running.handle.accept(&id).expect("accept");
    assert_eq!(
        update(&mut c, with_fin, &owner, None)
            .await
            .expect_err("stale")
            .code(),
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn namespaces_ids_and_types_are_checked() {
    let (running, k) = start().await;
    let mut c = provider_client(&running, &k).await;
    // Provider status: id must be the provider id.
    let spec = spec_of(&InfraProviderStatusSpec {
        name: "rackboot".into(),
        ..Default::default()
    });
    let wrong = res(
        NS_INFRA_PROVIDER,
        TYPE_PROVIDER_STATUS,
        "rack-9",
        "undefined",
        spec.clone(),
    );
    assert_eq!(
        create(&mut c, wrong, "").await.expect_err("id").code(),
        Code::InvalidArgument
    );
    let mut ok = res(
        NS_INFRA_PROVIDER,
        TYPE_PROVIDER_STATUS,
        PROVIDER,
        "undefined",
        spec,
    );
    ok.metadata
        .as_mut()
        .expect("md")
        .labels
        .insert(LABEL_STATIC_PROVIDER.into(), String::new());
    let s = create(&mut c, ok, "").await.expect("status");
    assert!(md(&s).labels.contains_key(LABEL_STATIC_PROVIDER));

    // Private namespace: own types only.
    let own_ns = private_namespace(PROVIDER);
    let good_ty = format!("BootRecords.{PROVIDER}.infraprovider.sidero.dev");
    let r = res(&own_ns, &good_ty, "x", "undefined", Spec::default());
    let stored = create(&mut c, r, "").await.expect("private create");
    assert!(
        !md(&stored).labels.contains_key(LABEL_PROVIDER_ID),
        "no label in the private namespace"
    );
    let r = res(
        &own_ns,
        "BootRecords.rack-2.infraprovider.sidero.dev",
        "x",
        "undefined",
        Spec::default(),
    );
    assert_eq!(
        create(&mut c, r, "").await.expect_err("suffix").code(),
        Code::InvalidArgument
    );
    let r = res(
        "infra-provider:rack-2",
        "BootRecords.rack-2.infraprovider.sidero.dev",
        "x",
        "undefined",
        Spec::default(),
    );
    assert_eq!(
        create(&mut c, r, "").await.expect_err("other ns").code(),
        Code::PermissionDenied
    );
    // Unknown shared type, other namespace, meta write.
    let r = res(
        NS_INFRA_PROVIDER,
        "Clusters.omni.sidero.dev",
        "x",
        "undefined",
        Spec::default(),
    );
    assert_eq!(
        create(&mut c, r, "").await.expect_err("type").code(),
        Code::PermissionDenied
    );
    assert_eq!(
        get(&mut c, "default", TYPE_INFRA_MACHINE, "x")
            .await
            .expect_err("ns")
            .code(),
        Code::PermissionDenied
    );
    let r = res(
        NS_META,
        TYPE_RESOURCE_DEFINITION,
        "x",
        "undefined",
        Spec::default(),
    );
    assert_eq!(
        create(&mut c, r, "").await.expect_err("meta").code(),
        Code::PermissionDenied
    );
    // Health status lives in the ephemeral namespace.
    let r = res(
        NS_INFRA_PROVIDER_EPHEMERAL,
        TYPE_PROVIDER_HEALTH,
        PROVIDER,
        "undefined",
        Spec::default(),
    );
    create(&mut c, r, "").await.expect("health");
    // Deleting the InfraProvider locks the provider out.
    running
        .handle
        .delete_infra_provider(PROVIDER)
        .expect("delete provider");
    assert_eq!(
        get(&mut c, NS_INFRA_PROVIDER, TYPE_PROVIDER_STATUS, PROVIDER)
            .await
            .expect_err("locked")
            .code(),
        Code::PermissionDenied
    );
}
