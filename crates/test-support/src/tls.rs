//! Certificates for TLS tests, generated with rcgen when the test runs:
//! PEM strings, nothing read from or written to disk.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};

/// The names every server certificate from [`TestCa::server_cert`] is
/// valid for: the loopback addresses and `localhost`.
pub const LOOPBACK_NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// A certificate (PEM) and its private key (PEM, PKCS#8). `Debug` leaves
/// the key out.
#[derive(Clone)]
pub struct CertifiedPem {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

impl fmt::Debug for CertifiedPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedPem").finish_non_exhaustive()
    }
}

/// A private certificate authority that issues the certificates a TLS test
/// needs. Each `TestCa` has its own key, so a certificate from one is
/// untrusted by a peer that trusts only another.
///
/// ```
/// use watchtower_test_support::tls::TestCa;
///
/// let ca = TestCa::new("test CA");
/// let server = ca.server_cert();
/// assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(server.key_pem.contains("PRIVATE KEY"));
/// ```
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed CA with `name` as its common name, valid from
    /// 1975 to 4096 (so tests never depend on the clock).
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate a CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign the CA");
        TestCa { issuer }
    }

    /// The CA certificate, PEM: what a peer adds to trust this CA.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for [`LOOPBACK_NAMES`].
    pub fn server_cert(&self) -> CertifiedPem {
        self.server_cert_for(&LOOPBACK_NAMES)
    }

    /// A server certificate valid only for `names` (DNS names or IP
    /// addresses): give names other than the one the client dials for a
    /// name mismatch.
    pub fn server_cert_for(&self, names: &[&str]) -> CertifiedPem {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server certificate for [`LOOPBACK_NAMES`] that expired on
    /// 2001-01-01.
    pub fn expired_server_cert(&self) -> CertifiedPem {
        self.issue(&LOOPBACK_NAMES, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    /// A client certificate with `name` as its common name, for mutual
    /// TLS.
    pub fn client_cert(&self, name: &str) -> CertifiedPem {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose, expired: bool) -> CertifiedPem {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("valid certificate names");
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("generate a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the certificate");
        CertifiedPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}
