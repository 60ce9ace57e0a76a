//! Test PKI: certificate authorities, leaf and self-signed certificates made with rcgen at test
//! time, and writers that lay them out like mounted Kubernetes TLS secrets under a secrets dir.
//! Nothing here is checked in: every run makes fresh keys. It must not talk to the proxy.
//!
//! [`TlsSecret::new`] is the TLS setup most tests start with: a CA, a leaf for some names, and
//! that leaf written as a secret in a fresh secrets dir.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A self-signed ECDSA P-256 certificate authority that signs leaf certificates.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    /// A new CA whose subject common name is `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-sign CA");
        Ca { cert, key }
    }

    /// The CA certificate as PEM (what goes into `ca.crt`).
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf like [`Ca::leaf`] with serial number `serial` (to revoke it in [`Ca::crl`]).
    pub fn leaf_with_serial(&self, names: &[&str], serial: u64) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let mut params = leaf_params(names);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// A CRL (PEM) signed by this CA revoking the certificates with the `revoked` serials;
    /// valid from 2020 to 2099.
    pub fn crl(&self, revoked: &[u64]) -> String {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.cert, &self.key)
            .expect("sign CRL")
            .pem()
            .expect("CRL PEM")
    }

    /// A leaf certificate signed by this CA, usable as server and as client certificate, with
    /// `names` as subject alternative names (IP literals become IP SANs, the rest DNS SANs).
    /// Returns (certificate PEM, PKCS#8 private key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let cert = leaf_params(names)
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// Leaf parameters: SANs from `names`, first name as common name, server + client auth usage.
fn leaf_params(names: &[&str]) -> CertificateParams {
    let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf params");
    let cn = names.first().copied().unwrap_or("tcpmap test leaf");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params
}

/// A self-signed ECDSA P-256 leaf for `names`: (certificate PEM, PKCS#8 private key PEM).
pub fn self_signed(names: &[&str]) -> (String, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = leaf_params(names)
        .self_signed(&key)
        .expect("self-sign leaf");
    (cert.pem(), key.serialize_pem())
}

/// Writes a Kubernetes-style TLS secret: `<dir>/<name>/tls.crt` and `<dir>/<name>/tls.key`.
/// `name` may contain `/` (e.g. `namespace/secret`) for namespaced layouts.
pub fn write_secret(dir: &Path, name: &str, cert_pem: &str, key_pem: &str) {
    let folder = dir.join(name);
    fs::create_dir_all(&folder).expect("create secret dir");
    fs::write(folder.join("tls.crt"), cert_pem).expect("write tls.crt");
    fs::write(folder.join("tls.key"), key_pem).expect("write tls.key");
    // Private, as a real key should be (`check` warns about group/other-readable keys).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(folder.join("tls.key"), fs::Permissions::from_mode(0o600))
        .expect("chmod tls.key");
}

/// A fresh secrets dir holding one TLS secret, and the CA that signed its certificate.
pub struct TlsSecret {
    /// The CA (a client trusts it to verify the proxy's certificate).
    pub ca: Ca,
    /// The secrets dir (`ProxyBuilder::secrets_dir`); removed on drop.
    pub dir: tempfile::TempDir,
}

impl TlsSecret {
    /// A CA named `ca`, a leaf signed by it for `names`, written as the TLS secret `secret`
    /// (`<dir>/<secret>/tls.crt`, `tls.key`) in a new temporary secrets dir.
    pub fn new(ca: &str, secret: &str, names: &[&str]) -> TlsSecret {
        let ca = Ca::new(ca);
        let dir = tempfile::tempdir().expect("secrets dir");
        let (cert, key) = ca.leaf(names);
        write_secret(dir.path(), secret, &cert, &key);
        TlsSecret { ca, dir }
    }

    /// The secrets dir's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes a CA secret: `<dir>/<name>/ca.crt`.
pub fn write_ca_secret(dir: &Path, name: &str, ca_pem: &str) {
    let folder = dir.join(name);
    fs::create_dir_all(&folder).expect("create secret dir");
    fs::write(folder.join("ca.crt"), ca_pem).expect("write ca.crt");
}

/// A rustls client config that trusts `ca_pem` (and offers `client` if given).
pub fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(cfg)
}

/// A rustls server config for a test upstream (optionally requesting client certs from `client_ca`).
pub fn server_config(cert: &str, key: &str, client_ca: Option<&str>) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = match client_ca {
        None => b.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .unwrap();
            b.with_client_cert_verifier(v)
        }
    };
    Arc::new(b.with_single_cert(chain, key).unwrap())
}
