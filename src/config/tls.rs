//! TLS material for the config pipeline: PEM certificates and keys, TLS versions and cipher-suite
//! names, and the rustls `ServerConfig` / `ClientConfig` a validated TLSContext turns into.
//!
//! Everything here is pure (bytes in, values or `String` errors out); the validator wraps the
//! errors into `ConfigError`s with file and line. It must not read files or open sockets: the
//! caller hands in PEM bytes. Configs are built once per config generation, with the aws-lc-rs
//! provider restricted to the chosen suites and to TLS 1.2+. The one shared state is the
//! session-ticket key source (`crate::state::tickets`): made once per process on first use, so that tickets
//! outlive a generation; building a config only reads it.
//!
//! ```text
//! PEM ─ parse_cert_key ─▶ CertKey ─┐
//! TLSContext fields ─▶ TlsParams ──┼─ server_config ─▶ Arc<ServerConfig>  (termination)
//! ca PEM ─ parse_cert_chain ───────┘─ client_config ─▶ Arc<ClientConfig>  (origination)
//! ```

mod any_cert;
mod suites;

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

pub(crate) use suites::{TlsVersion, check_cipher_suite, curve, is_below_1_2, parse_tls_version};

/// A certificate chain (leaf first) with the private key of its leaf, checked to match.
pub struct CertKey {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (never printed).
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertKey")
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Clone for CertKey {
    fn clone(&self) -> Self {
        CertKey {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// The TLSContext knobs that shape a rustls config (names already checked by the validator,
/// though the builders check them again).
#[derive(Debug, Clone, Default)]
pub struct TlsParams {
    /// Lowest version allowed; `None` = TLS 1.2.
    pub(crate) min_version: Option<TlsVersion>,
    /// Highest version allowed; `None` = TLS 1.3.
    pub(crate) max_version: Option<TlsVersion>,
    /// Cipher-suite names (rustls or OpenSSL spelling); empty = the provider's defaults.
    pub(crate) cipher_suites: Vec<String>,
    /// ALPN protocols in preference order; empty = no ALPN.
    pub(crate) alpn_protocols: Vec<String>,
    /// Key-exchange groups (`ecdh_curves`, OpenSSL names) in preference order; empty = the
    /// provider's defaults.
    pub(crate) ecdh_curves: Vec<String>,
    /// CRLs client certificates are checked against on termination (`crl_secret`).
    pub(crate) crls: Vec<CertificateRevocationListDer<'static>>,
}

/// Parses every `X509 CRL` block of a PEM file; an error when there is none.
pub(crate) fn parse_crls(pem: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid CRL PEM: {e}"))?;
    if crls.is_empty() {
        return Err("no CRL (`-----BEGIN X509 CRL-----`) found in PEM".to_owned());
    }
    Ok(crls)
}

/// Parses every `CERTIFICATE` block of a PEM file; an error when there is none.
pub fn parse_cert_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid certificate PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate found in PEM".to_owned());
    }
    Ok(chain)
}

/// Parses a certificate chain and its private key (RSA, ECDSA or Ed25519; PKCS#8, SEC1 or
/// PKCS#1 PEM) and checks that the key belongs to the leaf certificate.
pub fn parse_cert_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertKey, String> {
    let chain = parse_cert_chain(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no private key found in PEM".to_owned(),
        other => format!("invalid private key PEM: {other}"),
    })?;
    let provider = default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| format!("unsupported private key: {e}"))?;
    match CertifiedKey::new(chain.clone(), signing_key).keys_match() {
        Ok(()) => Ok(CertKey { chain, key }),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err("private key does not match the certificate".to_owned())
        }
        Err(e) => Err(format!(
            "cannot check the private key against the certificate: {e}"
        )),
    }
}

/// TLS 1.3 tickets sent after each handshake, full or resumed (rustls sends 2 by default); chosen by
/// measurement, see docs/benchmarks.md.
const TLS13_TICKETS: usize = 1;

/// Builds the config that terminates TLS with `cert`. With `client_ca`, client certificates are
/// verified against it: required when `client_cert_required`, else optional but verified when
/// sent. Requiring client certificates without a CA is an error.
pub fn server_config(
    cert: &CertKey,
    params: &TlsParams,
    client_ca: Option<&[CertificateDer<'static>]>,
    client_cert_required: bool,
) -> Result<Arc<ServerConfig>, String> {
    let (provider, versions) = provider_and_versions(params)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS settings: {e}"))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(root_store(ca)?, provider)
                .with_crls(params.crls.iter().cloned());
            let verifier = if client_cert_required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder
                .with_client_cert_verifier(verifier.build().map_err(|e| format!("client CA: {e}"))?)
        }
        None if !params.crls.is_empty() => {
            return Err("crl_secret needs a CA (ca_secret or cacert_chain_file) to verify client certificates".to_owned());
        }
        None if client_cert_required => {
            return Err("cert_required needs a CA (ca_secret or cacert_chain_file) to verify client certificates".to_owned());
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())
        .map_err(|e| format!("certificate: {e}"))?;
    config.alpn_protocols = alpn(&params.alpn_protocols)?;
    // Without a user-chosen list, the server picks by its own order (AES-128-GCM first, see
    // `provider_and_versions`): SHA-384 costs measurably more per handshake in software.
    config.ignore_client_order = params.cipher_suites.is_empty();
    // The default in-memory session cache stays (TLS 1.2 clients without ticket support; it is
    // per generation). Tickets use the process-wide keys, so they resume across reloads, and are
    // bound to this chain and client-auth policy (see
    // `crate::state::tickets`).
    config.ticketer = crate::state::tickets::ticketer(&crate::state::tickets::Binding {
        chain: &cert.chain,
        client_ca,
        client_cert_required,
        crls: &params.crls,
    })?;
    config.send_tls13_tickets = TLS13_TICKETS;
    // TLS 1.3 clients are served with records in our own buffers: rustls hands the keys over
    // after the handshake (`actors::connection::handshake`). The flag also tells the connection
    // that this config allows TLS 1.3.
    config.enable_secret_extraction = versions.contains(&&rustls::version::TLS13);
    Ok(Arc::new(config))
}

/// Builds the config that originates TLS to an upstream. Without `verify_with`, any server
/// certificate is accepted (Ambassador semantics) though handshake signatures are still checked;
/// with it, the chain and the host name are verified against those CA certificates.
pub fn client_config(
    client_cert: Option<&CertKey>,
    params: &TlsParams,
    verify_with: Option<&[CertificateDer<'static>]>,
) -> Result<Arc<ClientConfig>, String> {
    let (provider, versions) = provider_and_versions(params)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS settings: {e}"))?;
    let builder = match verify_with {
        Some(ca) => {
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                root_store(ca)?,
                provider,
            )
            .with_crls(params.crls.iter().cloned())
            .build()
            .map_err(|e| format!("upstream CA: {e}"))?;
            builder.with_webpki_verifier(verifier)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(any_cert::AcceptAnyServerCert {
                algorithms: provider.signature_verification_algorithms,
            })),
    };
    let mut config = match client_cert {
        Some(cert) => builder
            .with_client_auth_cert(cert.chain.clone(), cert.key.clone_key())
            .map_err(|e| format!("client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn(&params.alpn_protocols)?;
    Ok(Arc::new(config))
}

/// True for the AES-128-GCM suites (TLS 1.3 and the ECDHE ones of TLS 1.2).
fn is_aes128_gcm(suite: &rustls::SupportedCipherSuite) -> bool {
    use rustls::CipherSuite as C;
    matches!(
        suite.suite(),
        C::TLS13_AES_128_GCM_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    )
}

/// The aws-lc-rs provider restricted to the chosen suites, and the versions to enable.
///
/// Like Envoy, a list naming only TLS 1.2 suites leaves the TLS 1.3 suites at their defaults.
/// A version for which no chosen suite exists is dropped; none left is an error.
fn provider_and_versions(
    params: &TlsParams,
) -> Result<(Arc<CryptoProvider>, Vec<&'static SupportedProtocolVersion>), String> {
    let min = params.min_version.unwrap_or(TlsVersion::V1_2);
    let max = params.max_version.unwrap_or(TlsVersion::V1_3);
    if min > max {
        return Err(format!(
            "min_tls_version {min:?} is above max_tls_version {max:?}"
        ));
    }
    let mut provider = default_provider();
    if !params.cipher_suites.is_empty() {
        let mut chosen = Vec::new();
        for name in &params.cipher_suites {
            for suite in suites::resolve(name)? {
                if !chosen.contains(&suite) {
                    chosen.push(suite);
                }
            }
        }
        if !chosen
            .iter()
            .any(|s| s.version() == &rustls::version::TLS13)
        {
            chosen.extend(
                provider
                    .cipher_suites
                    .iter()
                    .filter(|s| s.version() == &rustls::version::TLS13),
            );
        }
        provider.cipher_suites = chosen;
    } else {
        // The defaults, AES-128-GCM first (its SHA-256 key schedule is cheaper than SHA-384's).
        provider.cipher_suites.sort_by_key(|s| !is_aes128_gcm(s));
    }
    if !params.ecdh_curves.is_empty() {
        let mut groups = Vec::new();
        for name in &params.ecdh_curves {
            let g = curve(name)?;
            if !groups
                .iter()
                .any(|x: &&dyn rustls::crypto::SupportedKxGroup| x.name() == g.name())
            {
                groups.push(g);
            }
        }
        provider.kx_groups = groups;
    }
    let wanted = [
        (TlsVersion::V1_2, &rustls::version::TLS12),
        (TlsVersion::V1_3, &rustls::version::TLS13),
    ];
    let versions: Vec<&'static SupportedProtocolVersion> = wanted
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, version)| version)
        .filter(|version| {
            provider
                .cipher_suites
                .iter()
                .any(|s| s.version() == *version)
        })
        .collect();
    if versions.is_empty() {
        return Err("no chosen cipher suite works with the allowed TLS versions".to_owned());
    }
    Ok((Arc::new(provider), versions))
}

/// A root store holding exactly the given CA certificates.
fn root_store(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots
            .add(cert.clone())
            .map_err(|e| format!("invalid CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate to verify with".to_owned());
    }
    Ok(Arc::new(roots))
}

/// ALPN protocol ids as bytes; each must be 1 to 255 bytes long.
fn alpn(protocols: &[String]) -> Result<Vec<Vec<u8>>, String> {
    protocols
        .iter()
        .map(|p| match p.len() {
            1..=255 => Ok(p.as_bytes().to_vec()),
            _ => Err(format!("ALPN protocol {p:?} must be 1 to 255 bytes long")),
        })
        .collect()
}

#[cfg(test)]
mod handshake_tests;
#[cfg(test)]
mod test_pki;
#[cfg(test)]
mod tests;
