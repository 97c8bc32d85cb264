//! Redfish driver: a small typed client (about five calls) over ureq with rustls.
//!
//! Discovery: `/redfish/v1/Systems` → first member. Power: POST
//! `Actions/ComputerSystem.Reset` with a ResetType, choosing among the values the BMC lists as
//! allowable. PXE: PATCH `Boot` with BootSourceOverrideTarget Pxe, Enabled Once/Continuous and
//! (unless disabled, or the BMC rejects it) BootSourceOverrideMode UEFI/Legacy, sending
//! `If-Match` with the system's ETag when the BMC asks for one (412/428).
//! Blocking HTTP runs on tokio's blocking pool.

use crate::{
    Bmc, BmcError, BmcFuture, BmcUrl, Credentials, PowerAction, PowerState, PxeBoot, Scheme,
};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RedfishOptions {
    /// Verify the BMC's TLS certificate (BMCs usually ship self-signed ones).
    pub verify_tls: bool,
    /// PEM file with extra trusted CA certificates.
    pub ca_file: Option<std::path::PathBuf>,
    /// Send BootSourceOverrideMode with the PXE override (some BMCs reject the field).
    pub send_boot_mode: bool,
    pub timeout: Duration,
}

impl Default for RedfishOptions {
    fn default() -> Self {
        Self {
            verify_tls: true,
            ca_file: None,
            send_boot_mode: true,
            timeout: Duration::from_secs(20),
        }
    }
}

pub struct Redfish {
    base: String,
    creds: Credentials,
    agent: ureq::Agent,
    opts: RedfishOptions,
    /// `@odata.id` of the system, discovered once.
    system: Mutex<Option<String>>,
}

/// A 3xx is not success: with redirects off, ureq hands it back as a response (a
/// `redfish+http://` BMC redirecting to HTTPS would otherwise "accept" every command).
fn not_redirected(r: ureq::Response) -> Result<ureq::Response, BmcError> {
    if (300..400).contains(&r.status()) {
        let to = r.header("Location").map(parse::clean).unwrap_or_default();
        return Err(BmcError::Refused(format!(
            "HTTP {}: redirected to {to:?}; use the BMC's final URL (https: redfish://)",
            r.status()
        )));
    }
    Ok(r)
}

fn transport(e: ureq::Error) -> BmcError {
    match e {
        ureq::Error::Status(401 | 403, _) => BmcError::Auth,
        ureq::Error::Status(code, r) => {
            let reason = parse::error_message(r.status_text());
            let body = r.into_string().unwrap_or_default();
            let msg = parse::error_message(&body);
            // A BMC that is busy or restarting often sends a bare 503: say at least that.
            BmcError::Refused(match (msg.is_empty(), reason.is_empty()) {
                (false, _) => format!("HTTP {code}: {msg}"),
                (true, false) => format!("HTTP {code} {reason}"),
                (true, true) => format!("HTTP {code}"),
            })
        }
        ureq::Error::Transport(t) => {
            let s = t.to_string();
            if s.contains("timed out") || s.contains("Timeout") {
                BmcError::Timeout(Duration::from_secs(20))
            } else {
                BmcError::Transport(s)
            }
        }
    }
}

/// Pure readers of what a Redfish BMC sends (fuzzed in `fuzz/`): the BMC is not trusted, so
/// every path it names must stay on the BMC (an absolute path, never an authority), and every
/// message it sends is cut to a bounded, single-line text before it reaches an error or a log.
pub mod parse {
    use crate::{BmcError, PowerState};
    use serde_json::Value;

    /// Longest BMC message kept in an error (characters).
    pub const MAX_MESSAGE: usize = 200;

    /// A path the BMC names (`@odata.id`, action `target`): absolute, not `//authority`, no
    /// whitespace or control characters, so `base + path` can only address the BMC itself.
    pub fn bmc_path(what: &str, path: &str) -> Result<String, BmcError> {
        let ok = path.starts_with('/')
            && !path.starts_with("//")
            && !path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '\\');
        if !ok {
            return Err(BmcError::Protocol(format!(
                "{what} {:?} is not a path on the BMC",
                clean(path)
            )));
        }
        Ok(path.to_string())
    }

    /// The system's path from `/redfish/v1/Systems`: the first member.
    pub fn system_path(systems: &Value) -> Result<String, BmcError> {
        let path = systems
            .pointer("/Members/0/@odata.id")
            .and_then(Value::as_str)
            .ok_or_else(|| BmcError::Protocol("/redfish/v1/Systems lists no system".into()))?;
        bmc_path("system id", path)
    }

    /// `PowerState` of a ComputerSystem (transitions count as where they are going from).
    pub fn power_state(system: &Value) -> Result<PowerState, BmcError> {
        match system.get("PowerState").and_then(Value::as_str) {
            Some("On") | Some("PoweringOff") => Ok(PowerState::On),
            Some("Off") | Some("PoweringOn") => Ok(PowerState::Off),
            other => Err(BmcError::Protocol(format!(
                "unexpected PowerState {:?}",
                other.map(clean)
            ))),
        }
    }

    /// The reset action of a ComputerSystem at `sys`: its target path (default
    /// `<sys>/Actions/ComputerSystem.Reset`) and the allowable ResetType values.
    pub fn reset_action(system: &Value, sys: &str) -> Result<(String, Vec<String>), BmcError> {
        let reset = system.pointer("/Actions/#ComputerSystem.Reset");
        let target = match reset.and_then(|r| r.get("target")).and_then(Value::as_str) {
            Some(t) => bmc_path("reset target", t)?,
            None => bmc_path(
                "reset target",
                &format!("{}/Actions/ComputerSystem.Reset", sys.trim_end_matches('/')),
            )?,
        };
        let allowed: Vec<String> = reset
            .and_then(|r| r.get("ResetType@Redfish.AllowableValues"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .take(32)
                    .map(clean)
                    .collect()
            })
            .unwrap_or_default();
        Ok((target, allowed))
    }

    /// The message of an error reply: the Redfish extended info or `error.message` when the body
    /// is JSON, else the body itself; always [`clean`]ed.
    pub fn error_message(body: &str) -> String {
        let msg = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| {
                v.pointer("/error/@Message.ExtendedInfo/0/Message")
                    .or(v.pointer("/error/message"))
                    .cloned()
            })
            .and_then(|m| m.as_str().map(str::to_string));
        clean(msg.as_deref().unwrap_or(body))
    }

    /// At most [`MAX_MESSAGE`] characters, control characters (line breaks) as spaces.
    pub fn clean(s: &str) -> String {
        s.chars()
            .take(MAX_MESSAGE)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }
}

mod insecure {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, Error, SignatureScheme};

    /// Accepts any certificate: only for BMCs configured with TLS verification off.
    #[derive(Debug)]
    pub struct AcceptAny(pub rustls::crypto::WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }
}

fn tls_config(opts: &RedfishOptions) -> Result<Arc<rustls::ClientConfig>, BmcError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| BmcError::Transport(format!("TLS set-up: {e}")))?;
    let cfg = if opts.verify_tls {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                BmcError::Transport(format!("cannot read CA file {}: {e}", ca.display()))
            })?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert
                    .map_err(|e| BmcError::Transport(format!("CA file {}: {e}", ca.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| BmcError::Transport(format!("CA file {}: {e}", ca.display())))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAny(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    };
    Ok(Arc::new(cfg))
}

impl Redfish {
    pub fn new(url: &BmcUrl, creds: Credentials, opts: RedfishOptions) -> Result<Self, BmcError> {
        let scheme = if url.scheme == Scheme::RedfishHttp {
            "http"
        } else {
            "https"
        };
        let mut b = ureq::AgentBuilder::new().timeout(opts.timeout).redirects(0);
        if url.scheme == Scheme::Redfish {
            b = b.tls_config(tls_config(&opts)?);
        }
        Ok(Self {
            base: format!("{scheme}://{}", url.authority()),
            creds,
            agent: b.build(),
            opts,
            system: Mutex::new(None),
        })
    }

    fn auth(&self, r: ureq::Request) -> ureq::Request {
        use std::io::Write;
        let mut raw = Vec::new();
        let _ = write!(raw, "{}:{}", self.creds.username, self.creds.password);
        r.set("Authorization", &format!("Basic {}", base64(&raw)))
            .set("Accept", "application/json")
    }

    /// A resource and its ETag: the `ETag` header, or the `@odata.etag` property some AMI
    /// and Gigabyte firmware put in the body instead.
    fn get(&self, path: &str) -> Result<(Value, Option<String>), BmcError> {
        let r = self
            .auth(self.agent.get(&format!("{}{path}", self.base)))
            .call()
            .map_err(transport)
            .and_then(not_redirected)?;
        let header = r.header("ETag").map(str::to_string);
        let v = r
            .into_json::<Value>()
            .map_err(|e| BmcError::Protocol(format!("{path}: invalid JSON: {e}")))?;
        let etag = header.or_else(|| {
            v.get("@odata.etag")
                .and_then(Value::as_str)
                .filter(|t| t.len() <= 256 && !t.chars().any(char::is_control))
                .map(str::to_string)
        });
        Ok((v, etag))
    }

    fn system_path(&self) -> Result<String, BmcError> {
        if let Some(p) = self
            .system
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(p);
        }
        let (v, _) = self.get("/redfish/v1/Systems")?;
        let path = parse::system_path(&v)?;
        *self.system.lock().unwrap_or_else(|p| p.into_inner()) = Some(path.clone());
        Ok(path)
    }

    fn blocking_state(&self) -> Result<PowerState, BmcError> {
        let (v, _) = self.get(&self.system_path()?)?;
        parse::power_state(&v)
    }

    fn blocking_power(&self, action: PowerAction) -> Result<(), BmcError> {
        let sys = self.system_path()?;
        let (v, _) = self.get(&sys)?;
        let (target, allowed) = parse::reset_action(&v, &sys)?;
        let reset_type = choose_reset_type(action, &allowed).ok_or_else(|| {
            BmcError::Unsupported(format!(
                "power {action:?} (allowable: {})",
                allowed.join(", ")
            ))
        })?;
        // The power button toggles: press it only when it leads to the wanted state.
        if reset_type == "PushPowerButton" {
            let want = if action == PowerAction::On {
                PowerState::On
            } else {
                PowerState::Off
            };
            if parse::power_state(&v)? == want {
                return Ok(());
            }
        }
        let r = self
            .auth(self.agent.post(&format!("{}{target}", self.base)))
            .send_json(json!({ "ResetType": reset_type }));
        r.map_err(transport).and_then(not_redirected).map(drop)
    }

    fn blocking_pxe(&self, how: PxeBoot) -> Result<(), BmcError> {
        let sys = self.system_path()?;
        let enabled = if how.persistent { "Continuous" } else { "Once" };
        let with_mode = json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": enabled,
            "BootSourceOverrideMode": if how.efi { "UEFI" } else { "Legacy" }}});
        let without_mode = json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": enabled}});
        let url = format!("{}{sys}", self.base);
        let patch = |body: &Value, etag: Option<&str>| {
            let mut req = self.auth(self.agent.request("PATCH", &url));
            if let Some(t) = etag {
                req = req.set("If-Match", t);
            }
            req.send_json(body.clone()).map_err(Box::new)
        };
        let mut body = if self.opts.send_boot_mode {
            &with_mode
        } else {
            &without_mode
        };
        let mut etag: Option<String> = None;
        // At most one retry for each of the two refusals below, in either order (an AMI BMC
        // may want both the ETag and no BootSourceOverrideMode): each guard holds once, so the
        // loop ends by the third send.
        loop {
            match patch(body, etag.as_deref()).map_err(|e| *e) {
                Ok(r) => return not_redirected(r).map(drop),
                // The BMC wants the ETag (some AMI BMCs): read it and try again.
                Err(ureq::Error::Status(412 | 428, r)) if etag.is_none() => {
                    etag = self.get(&sys)?.1;
                    if etag.is_none() {
                        return Err(transport(ureq::Error::Status(r.status(), r)));
                    }
                }
                // Some BMCs reject BootSourceOverrideMode: retry without it.
                Err(ureq::Error::Status(400, _)) if std::ptr::eq(body, &with_mode) => {
                    tracing::info!(bmc = %self.base, uefi = how.efi, "BMC refused BootSourceOverrideMode: boot override sent without it");
                    body = &without_mode;
                }
                Err(e) => return Err(transport(e)),
            }
        }
    }
}

/// Preference order of Redfish ResetType values for each action, limited to what the BMC
/// allows (when it lists nothing, the first preference is used).
pub fn choose_reset_type(action: PowerAction, allowed: &[String]) -> Option<&'static str> {
    let prefs: &[&'static str] = match action {
        PowerAction::On => &["On", "ForceOn", "PushPowerButton"],
        PowerAction::Off => &["ForceOff", "GracefulShutdown", "PushPowerButton"],
        PowerAction::Cycle => &["PowerCycle", "ForceRestart", "GracefulRestart"],
        PowerAction::Reset => &["ForceRestart", "GracefulRestart", "PowerCycle"],
        PowerAction::Soft => &["GracefulShutdown", "PushPowerButton"],
    };
    if allowed.is_empty() {
        return prefs.first().copied();
    }
    prefs
        .iter()
        .copied()
        .find(|p| allowed.iter().any(|a| a == p))
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(T[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BmcError> + Send + 'static,
) -> BmcFuture<'static, T> {
    Box::pin(async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| BmcError::Transport(format!("worker failed: {e}")))?
    })
}

/// Shares one client between the blocking calls.
impl Bmc for Arc<Redfish> {
    fn power_state(&self) -> BmcFuture<'_, PowerState> {
        let me = self.clone();
        blocking(move || me.blocking_state())
    }
    fn power(&self, action: PowerAction) -> BmcFuture<'_, ()> {
        let me = self.clone();
        blocking(move || me.blocking_power(action))
    }
    fn set_pxe_boot(&self, how: PxeBoot) -> BmcFuture<'_, ()> {
        let me = self.clone();
        blocking(move || me.blocking_pxe(how))
    }
    fn describe(&self) -> String {
        format!("redfish {}", self.base)
    }
}

#[cfg(test)]
#[path = "redfish_wire_tests.rs"]
mod wire_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn http_errors_say_what_the_bmc_said() {
        let bare = ureq::Response::new(503, "Service Unavailable", "").unwrap();
        assert_eq!(
            transport(ureq::Error::Status(503, bare)).to_string(),
            BmcError::Refused("HTTP 503 Service Unavailable".into()).to_string()
        );
        let body = r#"{"error":{"message":"The BMC firmware is busy"}}"#;
        let with_body = ureq::Response::new(500, "Internal Server Error", body).unwrap();
        let e = transport(ureq::Error::Status(500, with_body)).to_string();
        assert!(e.contains("HTTP 500: The BMC firmware is busy"), "{e}");
    }

    #[test]
    fn reset_types_follow_what_the_bmc_allows() {
        let sushy: Vec<String> = [
            "On",
            "ForceOff",
            "GracefulShutdown",
            "GracefulRestart",
            "ForceRestart",
            "Nmi",
            "ForceOn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(choose_reset_type(PowerAction::On, &sushy), Some("On"));
        assert_eq!(
            choose_reset_type(PowerAction::Off, &sushy),
            Some("ForceOff")
        );
        assert_eq!(
            choose_reset_type(PowerAction::Cycle, &sushy),
            Some("ForceRestart")
        );
        assert_eq!(
            choose_reset_type(PowerAction::Soft, &sushy),
            Some("GracefulShutdown")
        );
        let only_on = vec!["ForceOn".to_string()];
        assert_eq!(
            choose_reset_type(PowerAction::On, &only_on),
            Some("ForceOn")
        );
        assert_eq!(choose_reset_type(PowerAction::Off, &only_on), None);
        assert_eq!(
            choose_reset_type(PowerAction::Reset, &[]),
            Some("ForceRestart")
        );
    }

    #[test]
    fn bmc_named_paths_stay_on_the_bmc() {
        // A hostile BMC naming another host as its reset target would get our Basic
        // credentials sent there (`https://bmc:443@evil/...`): refused.
        let v = json!({"Actions": {"#ComputerSystem.Reset": {"target": "@evil.example/x"}}});
        assert!(parse::reset_action(&v, "/redfish/v1/Systems/1").is_err());
        for bad in ["//evil/x", "http://evil/x", "/a b", "/a\nb", "/a\\b", ""] {
            assert!(parse::bmc_path("t", bad).is_err(), "{bad:?}");
        }
        let v = json!({"Members": [{"@odata.id": "@evil"}]});
        assert!(parse::system_path(&v).is_err());
        let v = json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]});
        assert_eq!(
            parse::system_path(&v).ok().as_deref(),
            Some("/redfish/v1/Systems/1")
        );
        let (t, allowed) = parse::reset_action(&json!({}), "/s").expect("default target");
        assert_eq!(t, "/s/Actions/ComputerSystem.Reset");
        // Found by fuzz/fuzz_targets/redfish_json.rs: a system at "/" made "//Actions/...".
        let (t, _) = parse::reset_action(&json!({}), "/").expect("default target");
        assert_eq!(t, "/Actions/ComputerSystem.Reset");
        assert!(allowed.is_empty());
    }

    #[test]
    fn bmc_messages_are_bounded_single_lines() {
        let long = "x".repeat(5000);
        let body = json!({"error": {"message": format!("bad\nline{long}")}}).to_string();
        let m = parse::error_message(&body);
        assert!(m.starts_with("bad line"));
        assert_eq!(m.chars().count(), parse::MAX_MESSAGE);
        assert_eq!(parse::error_message("plain\r\ntext"), "plain  text");
        assert!(matches!(
            parse::power_state(&json!({"PowerState": "On"})),
            Ok(PowerState::On)
        ));
        assert!(parse::power_state(&json!({"PowerState": 3})).is_err());
    }

    #[test]
    fn basic_auth_encoding() {
        assert_eq!(base64(b"admin:password"), "YWRtaW46cGFzc3dvcmQ=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }
}
