//! STUB (owned by the TLS helper; the integrator replaces this file): PEM parsing and
//! rustls config building with the signatures the config pipeline calls.
//!
//! Pure apart from the rustls builders: no files, no sockets.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// A certificate chain (leaf first) with its private key.
pub struct CertKey {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertKey")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Every certificate in a PEM bundle; an error when there is none.
pub fn parse_cert_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(chain)
}

/// A chain and its key; an error when the key does not match the leaf certificate.
pub fn parse_cert_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertKey, String> {
    let chain = parse_cert_chain(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("no private key: {e}"))?;
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| format!("unusable private key: {e}"))?;
    CertifiedKey::new(chain.clone(), signing)
        .keys_match()
        .map_err(|e| format!("private key does not match the certificate: {e}"))?;
    Ok(CertKey { chain, key })
}

/// A TLS protocol version tcpmap accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

/// Parses `v1.2`, `1.3`, `TLSv1.2`, `TLSv1_3`; versions below 1.2 are errors.
pub fn parse_tls_version(s: &str) -> Result<TlsVersion, String> {
    let lower = s.trim().to_ascii_lowercase().replace('_', ".");
    let v = lower.strip_prefix("tls").unwrap_or(&lower);
    let v = v.strip_prefix('v').unwrap_or(v);
    match v {
        "1.2" => Ok(TlsVersion::V1_2),
        "1.3" => Ok(TlsVersion::V1_3),
        "1.0" | "1.1" | "1" => Err(format!("TLS version `{s}` is below the minimum v1.2")),
        _ => Err(format!("unknown TLS version `{s}` (use v1.2 or v1.3)")),
    }
}

/// Ok when rustls (aws-lc-rs) offers the named cipher suite.
pub fn check_cipher_suite(name: &str) -> Result<(), String> {
    let found = provider().cipher_suites.iter().any(|s| {
        s.suite()
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    });
    if found {
        Ok(())
    } else {
        Err(format!("cipher suite `{name}` is not offered by rustls"))
    }
}

/// Versions, ciphers and ALPN of a TLSContext.
#[derive(Debug, Clone, Default)]
pub struct TlsParams {
    /// Lowest version allowed.
    pub min_version: Option<TlsVersion>,
    /// Highest version allowed.
    pub max_version: Option<TlsVersion>,
    /// Cipher suite names (empty: the provider's defaults).
    pub cipher_suites: Vec<String>,
    /// ALPN protocols to offer.
    pub alpn_protocols: Vec<String>,
}

fn versions(p: &TlsParams) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let lo = p.min_version.unwrap_or(TlsVersion::V1_2);
    let hi = p.max_version.unwrap_or(TlsVersion::V1_3);
    let mut v = Vec::new();
    if lo <= TlsVersion::V1_3 && hi >= TlsVersion::V1_3 {
        v.push(&rustls::version::TLS13);
    }
    if lo <= TlsVersion::V1_2 && hi >= TlsVersion::V1_2 {
        v.push(&rustls::version::TLS12);
    }
    v
}

/// A server config for termination.
pub fn server_config(
    cert: &CertKey,
    params: &TlsParams,
    client_ca: Option<&[CertificateDer<'static>]>,
    client_cert_required: bool,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let prov = provider();
    let builder = rustls::ServerConfig::builder_with_provider(prov.clone())
        .with_protocol_versions(&versions(params))
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in ca {
                roots.add(c.clone()).map_err(|e| e.to_string())?;
            }
            let v =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), prov);
            let v = if client_cert_required {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = params
        .alpn_protocols
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    Ok(Arc::new(cfg))
}

/// A client config for origination (`verify_with: None` = no verification).
pub fn client_config(
    client_cert: Option<&CertKey>,
    params: &TlsParams,
    verify_with: Option<&[CertificateDer<'static>]>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let prov = provider();
    let builder = rustls::ClientConfig::builder_with_provider(prov.clone())
        .with_protocol_versions(&versions(params))
        .map_err(|e| e.to_string())?;
    let builder = match verify_with {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in ca {
                roots.add(c.clone()).map_err(|e| e.to_string())?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(prov))),
    };
    let mut cfg = match client_cert {
        Some(ck) => builder
            .with_client_auth_cert(ck.chain.clone(), ck.key.clone_key())
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = params
        .alpn_protocols
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    Ok(Arc::new(cfg))
}

/// Accepts any upstream certificate (Ambassador's `tls: true`).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
