//! Test-only client side: a small request signer (go-api-signature's `siderov1` scheme, with
//! knobs to break it on purpose) and a harness that runs a double on loopback.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use pgp::composed::{Deserializable, DetachedSignature, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::ser::Serialize as _;
use pgp::types::Password;
use rackboot_omni_double::keygen::{self, GeneratedKey, KeyOptions};
use rackboot_omni_double::{Double, DoubleConfig, Running};
use rackboot_proto::cosi::resource::state_client::StateClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub const PROVIDER: &str = "rack-1";

/// How to (mis)sign.
#[derive(Debug, Clone, Default)]
pub struct Mode {
    pub unsigned: bool,
    /// Seconds added to the timestamp.
    pub skew: i64,
    /// Method written into the payload instead of the real one.
    pub method: Option<String>,
    /// Payload bytes changed after signing.
    pub tamper: bool,
    /// Name written into the signature header.
    pub name: Option<String>,
    /// Fingerprint written into the signature header.
    pub fingerprint: Option<String>,
    /// Extra metadata sent but not listed in the payload (`key`, `value`).
    pub unlisted_header: Option<(String, String)>,
    /// Send `"nodes": []` in the payload (never verifies).
    pub empty_array: bool,
}

/// A service-account signer.
#[derive(Clone)]
pub struct Signer {
    pub name: String,
    pub fingerprint: String,
    key: SignedSecretKey,
    pub mode: Mode,
}

impl Signer {
    /// Loads an Omni service-account key (base64 JSON).
    pub fn from_service_account_key(b64: &str) -> Self {
        let json = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        let armored = v["pgp_key"].as_str().expect("pgp_key");
        let (key, _) = SignedSecretKey::from_string(armored).expect("armored key");
        Signer {
            name: v["name"].as_str().expect("name").to_string(),
            fingerprint: format!(
                "{:x}",
                pgp::types::KeyDetails::fingerprint(&key.primary_key)
            ),
            key,
            mode: Mode::default(),
        }
    }

    pub fn with(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The payload JSON exactly as Go's encoding/json writes it (sorted keys, compact).
    pub fn payload(&self, md: &tonic::metadata::MetadataMap, method: &str) -> String {
        let mut headers = serde_json::Map::new();
        for k in rackboot_omni_double::auth::INCLUDED_HEADERS {
            let vals: Vec<String> = md
                .get_all(k.to_ascii_lowercase().as_str())
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            let v = if k == "nodes" && self.mode.empty_array {
                serde_json::json!([])
            } else if vals.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::json!(vals)
            };
            headers.insert(k.to_string(), v);
        }
        serde_json::to_string(&serde_json::json!({"headers": headers, "method": method}))
            .expect("payload")
    }

    pub fn sign_bytes(&self, data: &[u8]) -> Vec<u8> {
        let sig = DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &self.key.primary_key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
        )
        .expect("sign");
        sig.to_bytes().expect("serialize")
    }

    /// Adds the three `x-sidero-*` entries for a call to `method`.
    pub fn sign(&self, mut req: Request<()>, method: &str) -> Request<()> {
        if self.mode.unsigned {
            return req;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let md = req.metadata_mut();
        md.insert(
            "x-sidero-timestamp",
            mv(&(now + self.mode.skew).to_string()),
        );
        let signed_method = self
            .mode
            .method
            .clone()
            .unwrap_or_else(|| method.to_string());
        let mut payload = self.payload(md, &signed_method);
        let sig =
            base64::engine::general_purpose::STANDARD.encode(self.sign_bytes(payload.as_bytes()));
        if self.mode.tamper {
            payload = payload.replace("\"method\"", "\"method\" ");
        }
        if let Some((k, v)) = &self.mode.unlisted_header {
            md.insert(
                tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).expect("key"),
                mv(v),
            );
        }
        md.insert("x-sidero-payload", mv(&payload));
        let name = self.mode.name.clone().unwrap_or_else(|| self.name.clone());
        let fp = self
            .mode
            .fingerprint
            .clone()
            .unwrap_or_else(|| self.fingerprint.clone());
        md.insert(
            "x-sidero-signature",
            mv(&format!("siderov1 {name} {fp} {sig}")),
        );
        req
    }
}

fn mv(s: &str) -> MetadataValue<tonic::metadata::Ascii> {
    MetadataValue::try_from(s).expect("ascii metadata")
}

/// Signs each call with the method path tonic's generated client records.
#[derive(Clone)]
pub struct SignInterceptor(pub Signer);

impl tonic::service::Interceptor for SignInterceptor {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let method = req
            .extensions()
            .get::<tonic::GrpcMethod>()
            .map(|m| format!("/{}/{}", m.service(), m.method()))
            .unwrap_or_default();
        Ok(self.0.sign(req, &method))
    }
}

pub type Client = StateClient<InterceptedService<Channel, SignInterceptor>>;

/// A State client over `running` that signs with `signer`.
pub async fn client(running: &Running, signer: Signer) -> Client {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    StateClient::with_interceptor(ch, SignInterceptor(signer))
}

pub fn key(id: &str) -> GeneratedKey {
    keygen::generate(&KeyOptions::new(id), SystemTime::now()).expect("keygen")
}

/// A double for [`PROVIDER`] with one fresh key, on loopback ports.
pub async fn start_with(mut cfg: impl FnMut(&mut DoubleConfig)) -> (Running, GeneratedKey) {
    let k = key(PROVIDER);
    let mut c = DoubleConfig::new(PROVIDER, vec![k.public_armored.clone()]);
    cfg(&mut c);
    let running = Double::new(&c)
        .expect("double")
        .spawn(
            "127.0.0.1:0".parse().expect("addr"),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("spawn");
    (running, k)
}

pub async fn start() -> (Running, GeneratedKey) {
    start_with(|_| {}).await
}

/// A signing client for the double's provider.
pub async fn provider_client(running: &Running, k: &GeneratedKey) -> Client {
    client(
        running,
        Signer::from_service_account_key(&k.service_account_key),
    )
    .await
}
