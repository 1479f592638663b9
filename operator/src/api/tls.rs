//! The API's TLS configuration: a certificate chain and its private key, PEM files, made into a rustls server
//! configuration (TLS 1.2 and 1.3, the aws-lc-rs provider, HTTP/1.1 by ALPN). No client certificates.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or the key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {source}")]
    Certificate {
        path: String,
        #[source]
        source: pem::Error,
    },
    #[error("the TLS certificate file {path} holds no certificate (PEM `CERTIFICATE`)")]
    NoCertificate { path: String },
    #[error("cannot read the TLS key {path}: {source}")]
    Key {
        path: String,
        #[source]
        source: pem::Error,
    },
    #[error("the TLS certificate {cert} and key {key} cannot be used together: {source}")]
    Mismatch {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
}

/// Reads `cert` (the server's certificate first, then its chain) and `key` (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_path = cert.display().to_string();
    let key_path = key.display().to_string();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate { path: cert_path.clone(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::Key {
            path: key_path.clone(),
            source: pem::Error::Io(std::io::Error::other("no private key (PEM `PRIVATE KEY`) found")),
        },
        source => TlsError::Key { path: key_path.clone(), source },
    })?;
    let mismatch = |source| TlsError::Mismatch { cert: cert_path.clone(), key: key_path.clone(), source };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
