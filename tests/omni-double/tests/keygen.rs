//! Service-account keys: the exact text shape Omni issues, the OpenPGP key inside (checked with
//! rpgp and with GnuPG), and the `--expired` / `--no-sign` variants.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use common::Signer;
use pgp::composed::{Deserializable, SignedSecretKey};
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::types::KeyDetails as _;
use rackboot_omni_double::auth::RegisteredKey;
use rackboot_omni_double::keygen::{generate, KeyOptions};

fn gpg(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--no-tty", "--quiet"])
        .args(args)
        .output()
        .expect("gpg runs (Debian package gnupg)")
}

/// `gpg --with-colons` "sec" record of the only key: (validity, algo, expiry, capabilities).
fn gpg_sec_record(home: &std::path::Path) -> (String, String, String, String) {
    let out = gpg(home, &["--with-colons", "--list-secret-keys"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("sec:"))
        .expect("a sec record");
    let f: Vec<&str> = line.split(':').collect();
    (f[1].into(), f[3].into(), f[6].into(), f[11].into())
}

#[test]
fn service_account_key_has_omnis_shape() {
    let k = generate(&KeyOptions::new("rack-1"), SystemTime::now()).expect("keygen");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&k.service_account_key)
        .expect("standard padded base64");
    let v: serde_json::Value = serde_json::from_slice(&raw).expect("json");
    let obj = v.as_object().expect("object");
    assert_eq!(obj.len(), 2);
    assert_eq!(v["name"], "infra-provider:rack-1");
    let armored = v["pgp_key"].as_str().expect("pgp_key");
    assert!(armored.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
    let (key, _) = SignedSecretKey::from_string(armored).expect("parses");
    key.verify_bindings().expect("self-signatures verify");
    assert_eq!(key.primary_key.algorithm(), PublicKeyAlgorithm::EdDSALegacy);
    assert_eq!(
        format!("{:x}", key.primary_key.fingerprint()),
        k.fingerprint
    );
    assert_eq!(k.fingerprint.len(), 40);
    let user = &key.details.users[0];
    assert_eq!(
        String::from_utf8_lossy(user.id.id()),
        "rack-1@infra-provider.serviceaccount.omni.sidero.dev"
    );
    let sig = &user.signatures[0];
    assert!(sig.key_flags().sign() && sig.key_flags().certify());
    let life = sig.key_expiration_time().expect("has an expiry").as_secs();
    assert_eq!(u64::from(life), 365 * 24 * 3600);
    let reg = RegisteredKey::from_armored(&k.public_armored).expect("public key registers");
    assert_eq!(reg.provider_id, "rack-1");
    assert!(reg.primary_can_sign);
    assert!(reg
        .expires
        .is_some_and(|e| e > SystemTime::now() + Duration::from_secs(364 * 24 * 3600)));
    assert!(
        !format!("{k:?}").contains("PRIVATE"),
        "Debug never shows the key"
    );
}

#[test]
fn gnupg_reads_the_key_and_verifies_our_signatures() {
    let home = tempfile::tempdir().expect("tempdir");
    let k = generate(&KeyOptions::new("rack-1"), SystemTime::now()).expect("keygen");
    let dir = home.path();
    std::fs::write(dir.join("sec.asc"), &k.private_armored).expect("write");
    let out = gpg(
        dir,
        &["--import", dir.join("sec.asc").to_str().expect("path")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (validity, algo, expiry, caps) = gpg_sec_record(dir);
    assert_eq!(algo, "22", "EdDSA");
    assert!(!expiry.is_empty(), "gpg sees an expiry");
    assert_ne!(validity, "e");
    assert!(caps.contains('s') && caps.contains('c'), "caps {caps}");

    let signer = Signer::from_service_account_key(&k.service_account_key);
    let payload =
        br#"{"headers":{"x-sidero-timestamp":["1"]},"method":"/cosi.resource.State/Get"}"#;
    std::fs::write(dir.join("payload"), payload).expect("write");
    std::fs::write(dir.join("payload.sig"), signer.sign_bytes(payload)).expect("write");
    let p = |n: &str| dir.join(n).to_str().expect("path").to_string();
    let ok = gpg(dir, &["--verify", &p("payload.sig"), &p("payload")]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::write(dir.join("payload"), b"tampered").expect("write");
    let bad = gpg(dir, &["--verify", &p("payload.sig"), &p("payload")]);
    assert!(!bad.status.success());
}

#[test]
fn expired_and_non_signing_variants() {
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path();
    let expired = generate(
        &KeyOptions {
            expired: true,
            ..KeyOptions::new("rack-1")
        },
        SystemTime::now(),
    )
    .expect("keygen");
    let reg = RegisteredKey::from_armored(&expired.public_armored).expect("registers");
    assert!(reg.expires.is_some_and(|e| e < SystemTime::now()));
    std::fs::write(dir.join("exp.asc"), &expired.private_armored).expect("write");
    let out = gpg(
        dir,
        &["--import", dir.join("exp.asc").to_str().expect("path")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (validity, _, _, _) = gpg_sec_record(dir);
    assert_eq!(validity, "e", "gpg sees it expired");

    let nosign = generate(
        &KeyOptions {
            sign: false,
            ..KeyOptions::new("rack-1")
        },
        SystemTime::now(),
    )
    .expect("keygen");
    let reg = RegisteredKey::from_armored(&nosign.public_armored).expect("registers");
    assert!(!reg.primary_can_sign);
    assert!(generate(&KeyOptions::new("Not_A_Label"), SystemTime::now()).is_err());
}
