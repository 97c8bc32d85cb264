//! Signature verification: every way a call can be refused, plus the accepted shape.

mod common;

use common::{client, key, provider_client, start, start_with, Mode, Signer, PROVIDER};
use rackboot_omni_double::keygen::{self, KeyOptions};
use rackboot_omni_double::names::*;
use rackboot_proto::cosi::resource::GetRequest;
use tonic::Code;

fn get_req() -> GetRequest {
    GetRequest {
        namespace: NS_META.into(),
        r#type: TYPE_RESOURCE_DEFINITION.into(),
        id: TYPE_JOIN_CONFIG.to_lowercase(),
        options: None,
    }
}

async fn code_with(mode: Mode) -> Code {
    let (running, k) = start().await;
    let signer = Signer::from_service_account_key(&k.service_account_key).with(mode);
    let mut c = client(&running, signer).await;
    match c.get(get_req()).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn correctly_signed_call_is_accepted() {
    let (running, k) = start().await;
    let mut c = provider_client(&running, &k).await;
    let r = c.get(get_req()).await.expect("signed get");
    let md = r
        .into_inner()
        .resource
        .and_then(|r| r.metadata)
        .expect("metadata");
    assert_eq!(md.id, "providerjoinconfigs.omni.sidero.dev");
}

#[tokio::test]
async fn unsigned_call_is_unauthenticated() {
    assert_eq!(
        code_with(Mode {
            unsigned: true,
            ..Default::default()
        })
        .await,
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn tampered_payload_is_unauthenticated() {
    assert_eq!(
        code_with(Mode {
            tamper: true,
            ..Default::default()
        })
        .await,
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn wrong_method_in_payload_is_unauthenticated() {
    let mode = Mode {
        method: Some("/cosi.resource.State/List".into()),
        ..Default::default()
    };
    assert_eq!(code_with(mode).await, Code::Unauthenticated);
}

#[tokio::test]
async fn old_and_future_timestamps_are_unauthenticated() {
    assert_eq!(
        code_with(Mode {
            skew: -301,
            ..Default::default()
        })
        .await,
        Code::Unauthenticated
    );
    assert_eq!(
        code_with(Mode {
            skew: 301,
            ..Default::default()
        })
        .await,
        Code::Unauthenticated
    );
    // Within the skew: accepted.
    assert_eq!(
        code_with(Mode {
            skew: -200,
            ..Default::default()
        })
        .await,
        Code::Ok
    );
}

#[tokio::test]
async fn name_mismatch_is_unauthenticated() {
    let mode = Mode {
        name: Some("infra-provider:someone-else".into()),
        ..Default::default()
    };
    assert_eq!(code_with(mode).await, Code::Unauthenticated);
    // Omni's e-mail form of the same identity is the same identity.
    let mode = Mode {
        name: Some(provider_email(PROVIDER)),
        ..Default::default()
    };
    assert_eq!(code_with(mode).await, Code::Ok);
}

#[tokio::test]
async fn unknown_fingerprint_is_unauthenticated() {
    let mode = Mode {
        fingerprint: Some("00".repeat(20)),
        ..Default::default()
    };
    assert_eq!(code_with(mode).await, Code::Unauthenticated);
}

#[tokio::test]
async fn signature_by_another_key_is_unauthenticated() {
    let (running, k) = start().await;
    let other = key(PROVIDER);
    // Signs with the unregistered key but claims the registered fingerprint.
    let signer = Signer::from_service_account_key(&other.service_account_key).with(Mode {
        fingerprint: Some(k.fingerprint.clone()),
        ..Default::default()
    });
    let mut c = client(&running, signer).await;
    let e = c.get(get_req()).await.expect_err("must be refused");
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn header_not_in_payload_or_empty_array_is_unauthenticated() {
    let mode = Mode {
        unlisted_header: Some(("cluster".into(), "c1".into())),
        ..Default::default()
    };
    assert_eq!(code_with(mode).await, Code::Unauthenticated);
    assert_eq!(
        code_with(Mode {
            empty_array: true,
            ..Default::default()
        })
        .await,
        Code::Unauthenticated
    );
    // A header outside the ten listed ones is not covered by the signature.
    let mode = Mode {
        unlisted_header: Some(("x-other".into(), "v".into())),
        ..Default::default()
    };
    assert_eq!(code_with(mode).await, Code::Ok);
}

#[tokio::test]
async fn expired_key_is_unauthenticated() {
    let expired = keygen::generate(
        &KeyOptions {
            expired: true,
            ..KeyOptions::new(PROVIDER)
        },
        std::time::SystemTime::now(),
    )
    .expect("keygen");
    let pub_key = expired.public_armored.clone();
    let (running, _) = start_with(|c| c.public_keys.push(pub_key.clone())).await;
    let mut c = client(
        &running,
        Signer::from_service_account_key(&expired.service_account_key),
    )
    .await;
    let e = c.get(get_req()).await.expect_err("expired key");
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn key_without_signing_flag_is_unauthenticated() {
    let nosign = keygen::generate(
        &KeyOptions {
            sign: false,
            ..KeyOptions::new(PROVIDER)
        },
        std::time::SystemTime::now(),
    )
    .expect("keygen");
    let pub_key = nosign.public_armored.clone();
    let (running, _) = start_with(|c| c.public_keys.push(pub_key.clone())).await;
    let mut c = client(
        &running,
        Signer::from_service_account_key(&nosign.service_account_key),
    )
    .await;
    let e = c.get(get_req()).await.expect_err("non-signing key");
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn valid_key_of_an_unregistered_provider_is_permission_denied() {
    let stranger = key("rack-2");
    let pub_key = stranger.public_armored.clone();
    let (running, _) = start_with(|c| c.public_keys.push(pub_key.clone())).await;
    let mut c = client(
        &running,
        Signer::from_service_account_key(&stranger.service_account_key),
    )
    .await;
    let e = c.get(get_req()).await.expect_err("no InfraProvider rack-2");
    assert_eq!(e.code(), Code::PermissionDenied);
    // Once an admin creates it, the same key works.
    running
        .handle
        .create_infra_provider("rack-2")
        .expect("create provider");
    c.get(get_req()).await.expect("now allowed");
}
