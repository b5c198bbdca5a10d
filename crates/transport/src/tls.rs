//! `wss://`: rustls client configuration and typed TLS errors.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use watchtower_core::{TlsErrorKind, WatchtowerError};

/// PEM bytes, or a file to read them from when the transport is built.
#[derive(Clone)]
pub(crate) enum Pem {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl Pem {
    fn load(&self, what: &str) -> Result<Vec<u8>, WatchtowerError> {
        match self {
            Pem::Bytes(b) => Ok(b.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|e| {
                WatchtowerError::tls(
                    TlsErrorKind::Config,
                    format!("could not read the {what} file {}: {e}", path.display()),
                    None,
                )
            }),
        }
    }
}

/// Which roots to trust and which identity to present. Verification is
/// always on: there is deliberately no switch to accept invalid
/// certificates. A self-signed deployment adds its CA instead.
#[derive(Clone)]
pub(crate) struct TlsOptions {
    pub(crate) webpki_roots: bool,
    pub(crate) native_roots: bool,
    pub(crate) extra_roots: Vec<Pem>,
    pub(crate) client_identity: Option<(Pem, Pem)>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            webpki_roots: true,
            native_roots: false,
            extra_roots: Vec::new(),
            client_identity: None,
        }
    }
}

fn config_error(message: String) -> WatchtowerError {
    WatchtowerError::tls(TlsErrorKind::Config, message, None)
}

impl TlsOptions {
    /// Builds the rustls client config. Runs once per transport, before any
    /// network I/O, so a bad certificate file fails `connect()` at once.
    pub(crate) fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, WatchtowerError> {
        let mut roots = RootCertStore::empty();
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if self.native_roots {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(config_error(format!(
                    "no certificates found in the platform trust store{}",
                    found
                        .errors
                        .first()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )));
            }
            // Unparseable platform certificates are skipped, as browsers do.
            roots.add_parsable_certificates(found.certs);
        }
        for pem in &self.extra_roots {
            let bytes = pem.load("root CA")?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert =
                    cert.map_err(|e| config_error(format!("the root CA PEM is not valid: {e}")))?;
                roots.add(cert).map_err(|e| {
                    config_error(format!("the root CA certificate was rejected: {e}"))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(config_error(
                    "the root CA PEM holds no CERTIFICATE block".to_string(),
                ));
            }
        }
        if roots.is_empty() {
            return Err(config_error(
                "no trusted roots: enable webpki or native roots, or add a root CA".to_string(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(format!("TLS protocol versions: {e}")))?
            .with_root_certificates(roots);
        let config = match &self.client_identity {
            None => builder.with_no_client_auth(),
            Some((cert_pem, key_pem)) => {
                let cert_bytes = cert_pem.load("client certificate")?;
                let chain = CertificateDer::pem_slice_iter(&cert_bytes)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        config_error(format!("the client certificate PEM is not valid: {e}"))
                    })?;
                if chain.is_empty() {
                    return Err(config_error(
                        "the client certificate PEM holds no CERTIFICATE block".to_string(),
                    ));
                }
                let key_bytes = key_pem.load("client key")?;
                let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
                    config_error(format!(
                        "the client key PEM holds no usable private key: {e}"
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    config_error(format!(
                        "the client certificate and key do not fit together: {e}"
                    ))
                })?
            }
        };
        Ok(Arc::new(config))
    }
}

/// Turns a failed TLS handshake into a typed error that says what to do.
pub(crate) fn handshake_error(error: std::io::Error, host: &str) -> WatchtowerError {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    let Some(rustls_error) = rustls_error else {
        return WatchtowerError::connection_with(format!("TLS connection to {host} failed"), error);
    };
    use rustls::CertificateError as C;
    let (kind, message) = match &rustls_error {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => (
            TlsErrorKind::UnknownIssuer,
            format!(
                "the certificate of {host} is signed by an unknown CA; if the server uses a \
                 private or self-signed CA, add it with `add_root_certificate_pem`"
            ),
        ),
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => (
            TlsErrorKind::NameMismatch,
            format!(
                "the certificate presented by {host} is not valid for that name; connect with \
                 the host name the certificate was issued for"
            ),
        ),
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => (
            TlsErrorKind::Expired,
            format!(
                "the certificate of {host} is expired or not yet valid; renew it on the server \
                 (or check this machine's clock)"
            ),
        ),
        rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown,
        ) => (
            TlsErrorKind::ClientCertificate,
            format!(
                "{host} rejected the TLS handshake over the client certificate; configure one \
                 with `client_certificate_pem` that the server's client CA trusts"
            ),
        ),
        other => (
            TlsErrorKind::Other,
            format!("TLS handshake with {host} failed: {other}"),
        ),
    };
    WatchtowerError::tls(kind, message, Some(Box::new(rustls_error)))
}
