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
    match tls_failure(error, host) {
        Ok(typed) => typed,
        Err(error) => {
            WatchtowerError::connection_with(format!("TLS connection to {host} failed"), error)
        }
    }
}

/// The typed TLS error for an I/O error of a TLS stream that carries a
/// rustls error; the I/O error back when it carries none (a reset, an EOF).
///
/// Used for the handshake and for the WebSocket upgrade after it: with TLS
/// 1.3 the client's side of the handshake completes before the server has
/// checked the client's certificate, so a server's refusal of it arrives as
/// an alert on the first read, which is the upgrade's.
pub(crate) fn tls_failure(
    error: std::io::Error,
    host: &str,
) -> Result<WatchtowerError, std::io::Error> {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    match rustls_error {
        Some(rustls_error) => Ok(typed(rustls_error, host)),
        None => Err(error),
    }
}

fn typed(rustls_error: rustls::Error, host: &str) -> WatchtowerError {
    use rustls::AlertDescription as A;
    use rustls::CertificateError as C;
    let (kind, message) = match &rustls_error {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => (
            TlsErrorKind::UnknownIssuer,
            format!(
                "the certificate of {host} is signed by an unknown CA; if the server uses a \
                 private or self-signed CA, add it with `add_root_certificate_pem` (or \
                 `add_root_certificate_file`)"
            ),
        ),
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => (
            TlsErrorKind::NameMismatch,
            format!(
                "the certificate presented by {host} is not valid for that name; connect with \
                 the host name the certificate was issued for, or reissue it with `{host}` \
                 among its names"
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
        rustls::Error::AlertReceived(A::CertificateRequired) => (
            TlsErrorKind::ClientCertificate,
            format!(
                "{host} requires a client certificate; present one that the server's client \
                 CA trusts with `client_certificate_pem` (or `client_certificate_files`)"
            ),
        ),
        rustls::Error::AlertReceived(
            alert @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied),
        ) => (
            TlsErrorKind::ClientCertificate,
            format!(
                "{host} refused our client certificate ({alert:?}); present one issued by a CA \
                 the server trusts for client authentication, and valid now"
            ),
        ),
        rustls::Error::InvalidMessage(_) => (
            TlsErrorKind::Other,
            format!(
                "{host} did not answer with TLS; if the server does not serve TLS on that port, \
                 use a ws:// URL (or the server's TLS port)"
            ),
        ),
        _ => (
            TlsErrorKind::Other,
            format!("the TLS handshake with {host} failed"),
        ),
    };
    WatchtowerError::tls(kind, message, Some(Box::new(rustls_error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(error: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }

    fn kind(error: rustls::Error) -> TlsErrorKind {
        match handshake_error(io(error), "example.com") {
            WatchtowerError::Tls { kind, .. } => kind,
            other => panic!("expected a TLS error, got {other:?}"),
        }
    }

    #[test]
    fn rustls_errors_map_to_kinds() {
        use rustls::AlertDescription as A;
        use rustls::CertificateError as C;
        let bad = |c| rustls::Error::InvalidCertificate(c);
        assert_eq!(kind(bad(C::UnknownIssuer)), TlsErrorKind::UnknownIssuer);
        assert_eq!(kind(bad(C::NotValidForName)), TlsErrorKind::NameMismatch);
        assert_eq!(kind(bad(C::Expired)), TlsErrorKind::Expired);
        assert_eq!(kind(bad(C::NotValidYet)), TlsErrorKind::Expired);
        for alert in [A::CertificateRequired, A::BadCertificate, A::UnknownCA] {
            assert_eq!(
                kind(rustls::Error::AlertReceived(alert)),
                TlsErrorKind::ClientCertificate
            );
        }
        assert_eq!(
            kind(rustls::Error::AlertReceived(A::HandshakeFailure)),
            TlsErrorKind::Other
        );
    }

    #[test]
    fn messages_say_what_to_do_and_print_the_cause_once() {
        let e = handshake_error(
            io(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
            "example.com",
        )
        .to_string();
        assert!(e.contains("add_root_certificate_pem"), "{e}");
        assert!(e.contains("example.com"), "{e}");
    }

    #[test]
    fn io_errors_without_rustls_inside_stay_connection_errors() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(tls_failure(reset, "h").is_err());
        let e = handshake_error(std::io::Error::from(std::io::ErrorKind::UnexpectedEof), "h");
        assert!(matches!(e, WatchtowerError::Connection { .. }), "{e:?}");
    }
}
