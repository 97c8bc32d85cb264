//! The gRPC channel to Omni: `https://` (rustls: system roots, an optional extra CA file, an
//! explicit skip-verify switch) or plaintext `http://` (tests); HTTP/2 keepalive.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, Clone, Default)]
pub struct TransportConfig {
    pub endpoint: String,
    /// PEM file with extra trusted CA certificates (private Omni CA).
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Only for lab setups; logged loudly.
    pub insecure_skip_verify: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("omni.endpoint {0:?} is not a URL like https://omni.example.com")]
    Url(String),
    #[error("omni.endpoint {0:?}: the scheme must be https or http")]
    Scheme(String),
    #[error("omni.ca_file {path}: {why}")]
    CaFile { path: String, why: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// A lazily connecting channel (reconnects on its own after failures).
pub fn channel(cfg: &TransportConfig) -> Result<Channel, TransportError> {
    let uri: Uri = cfg
        .endpoint
        .parse()
        .map_err(|_| TransportError::Url(cfg.endpoint.clone()))?;
    let host = uri
        .host()
        .ok_or_else(|| TransportError::Url(cfg.endpoint.clone()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(TransportError::Scheme(cfg.endpoint.clone())),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let endpoint = Endpoint::from(uri)
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if !https {
        return Ok(endpoint.connect_lazy());
    }
    let tls = Arc::new(client_config(cfg)?);
    let server_name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|_| TransportError::Url(cfg.endpoint.clone()))?;
    let connector = tower::service_fn(move |_: Uri| {
        let tls = tls.clone();
        let server_name = server_name.clone();
        let host = host.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(server_name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

fn client_config(cfg: &TransportConfig) -> Result<rustls::ClientConfig, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = if cfg.insecure_skip_verify {
        tracing::warn!(
            "omni: TLS certificate verification is DISABLED (omni.insecure_skip_verify)"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A broken system certificate must not take the others down.
            let _ = roots.add(cert);
        }
        if let Some(path) = &cfg.ca_file {
            let err = |why: String| TransportError::CaFile {
                path: path.display().to_string(),
                why,
            };
            let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| err(e.to_string()))?;
                roots.add(cert).map_err(|e| err(e.to_string()))?;
                n += 1;
            }
            if n == 0 {
                return Err(err("no PEM certificate in the file".into()));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepts every certificate (still checks the handshake signatures).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
