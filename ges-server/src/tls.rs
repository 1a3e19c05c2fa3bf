//! HTTPS: the listener's TLS configuration, from a certificate chain and a
//! private key in PEM files (`[server.tls]`), on rustls with the *ring*
//! provider, TLS 1.2 and 1.3, HTTP/1.1 over ALPN.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::server::ServerError;

/// The acceptor for the configured certificate and key.
///
/// # Errors
///
/// [`ServerError::Tls`] naming the file that cannot be read or the key that
/// does not fit the certificate.
pub(crate) fn acceptor(cfg: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    let bad = |what: String| ServerError::Tls(what);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| bad(format!("cannot read {}: {e}", cfg.cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            bad(format!(
                "{} holds a damaged certificate: {e}",
                cfg.cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(bad(format!("{} holds no certificate", cfg.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| {
        bad(format!(
            "cannot read a private key from {}: {e}",
            cfg.key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(format!("the key does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
