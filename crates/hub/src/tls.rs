//! `wss://`: the hub's certificate and key, and the client CA for mutual
//! TLS.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::HubError;

/// What the hub needs to serve `wss://`: its certificate chain and private
/// key, and optionally a client CA whose certificates every client must
/// present (mutual TLS).
///
/// Everything is parsed and checked when the `HubTls` is made, so a bad
/// file fails at start, not at the first client. TLS 1.2 and 1.3 through
/// rustls (no OpenSSL). `Debug` never shows the key.
///
/// ```no_run
/// use watchtower_hub::{Hub, HubTls};
///
/// # async fn run() -> Result<(), watchtower_hub::HubError> {
/// let tls = HubTls::from_pem_files("cert.pem", "key.pem")?
///     // Optional: only clients with a certificate from this CA get in.
///     .require_client_certificates_file("clients-ca.pem")?;
/// let hub = Hub::builder().tls(tls).bind("0.0.0.0:8443").await?;
/// println!("clients connect to {}", hub.url()); // wss://0.0.0.0:8443/events
/// # Ok(()) }
/// ```
pub struct HubTls {
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<Arc<RootCertStore>>,
    server_config: Arc<rustls::ServerConfig>,
}

impl Clone for HubTls {
    fn clone(&self) -> Self {
        HubTls {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            client_roots: self.client_roots.clone(),
            server_config: Arc::clone(&self.server_config),
        }
    }
}

impl fmt::Debug for HubTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubTls")
            .field("certificates", &self.cert_chain.len())
            .field(
                "client_certificates_required",
                &self.requires_client_certificates(),
            )
            .finish_non_exhaustive()
    }
}

fn tls_error(message: impl Into<String>) -> HubError {
    HubError::Tls {
        message: message.into(),
        source: None,
    }
}

fn tls_error_with(
    message: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> HubError {
    HubError::Tls {
        message: message.into(),
        source: Some(Box::new(source)),
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, HubError> {
    std::fs::read(path).map_err(|e| {
        tls_error_with(
            format!("could not read the {what} file {}", path.display()),
            e,
        )
    })
}

/// Every CERTIFICATE block in `pem`; at least one.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, HubError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error_with(format!("the {what} PEM is not valid"), e))?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "the {what} PEM holds no CERTIFICATE block"
        )));
    }
    Ok(certs)
}

impl HubTls {
    /// Serves with `cert_chain` (PEM: the server certificate first, then
    /// any intermediates) and `private_key` (PEM: PKCS#8, PKCS#1 or SEC1).
    ///
    /// Fails with [`HubError::Tls`] when either is not valid PEM or the key
    /// does not belong to the certificate.
    pub fn from_pem(
        cert_chain: impl AsRef<[u8]>,
        private_key: impl AsRef<[u8]>,
    ) -> Result<HubTls, HubError> {
        let cert_chain = certificates(cert_chain.as_ref(), "certificate")?;
        let key = PrivateKeyDer::from_pem_slice(private_key.as_ref())
            .map_err(|e| tls_error_with("the private key PEM holds no usable private key", e))?;
        let server_config = server_config(&cert_chain, &key, None)?;
        Ok(HubTls {
            cert_chain,
            key,
            client_roots: None,
            server_config,
        })
    }

    /// Like [`from_pem`](Self::from_pem), reading the two PEM files.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
    ) -> Result<HubTls, HubError> {
        let cert = read(cert_chain.as_ref(), "certificate")?;
        let key = read(private_key.as_ref(), "private key")?;
        HubTls::from_pem(cert, key)
    }

    /// Requires every client to present a certificate that chains to one
    /// of the CA certificates in `client_ca` (PEM, one or more). A client
    /// without one, or with one from another CA, fails the TLS handshake
    /// and never reaches the WebSocket upgrade. Default: no client
    /// certificate is asked for.
    pub fn require_client_certificates(
        mut self,
        client_ca: impl AsRef<[u8]>,
    ) -> Result<HubTls, HubError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(client_ca.as_ref(), "client CA")? {
            roots
                .add(cert)
                .map_err(|e| tls_error_with("the client CA certificate was rejected", e))?;
        }
        let roots = Arc::new(roots);
        self.server_config = server_config(&self.cert_chain, &self.key, Some(&roots))?;
        self.client_roots = Some(roots);
        Ok(self)
    }

    /// Like [`require_client_certificates`](Self::require_client_certificates),
    /// reading the client CA from a PEM file.
    pub fn require_client_certificates_file(
        self,
        client_ca: impl AsRef<Path>,
    ) -> Result<HubTls, HubError> {
        let pem = read(client_ca.as_ref(), "client CA")?;
        self.require_client_certificates(pem)
    }

    /// True when clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.client_roots.is_some()
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.server_config))
    }
}

/// A running hub's TLS settings, replaceable while it runs: a new
/// connection takes whatever is current when it is accepted.
#[derive(Debug)]
pub(crate) struct TlsSlot(std::sync::RwLock<HubTls>);

impl TlsSlot {
    pub(crate) fn new(tls: HubTls) -> TlsSlot {
        TlsSlot(std::sync::RwLock::new(tls))
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .acceptor()
    }

    pub(crate) fn replace(&self, tls: HubTls) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tls;
    }
}

fn server_config(
    cert_chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    client_roots: Option<&Arc<RootCertStore>>,
) -> Result<Arc<rustls::ServerConfig>, HubError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error_with("no usable TLS protocol version", e))?;
    let builder = match client_roots {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), provider)
                .build()
                .map_err(|e| tls_error_with("the client CA cannot verify clients", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(cert_chain.to_vec(), key.clone_key())
        .map_err(|e| {
            tls_error_with(
                "the certificate and private key cannot be used together; check that the key \
                 belongs to the first certificate of the chain",
                e,
            )
        })?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_tls_error_that_names_the_part() {
        let e = HubTls::from_pem("not pem", "not pem").unwrap_err();
        assert!(matches!(e, HubError::Tls { .. }), "{e:?}");
        assert!(e.to_string().contains("certificate"), "{e}");

        let e = HubTls::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}
