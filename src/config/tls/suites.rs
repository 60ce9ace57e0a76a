//! TLS version and cipher-suite names: the spellings Ambassador, Envoy, OpenSSL and rustls users
//! write, mapped onto what the aws-lc-rs provider offers. Names only; no config building here.

use rustls::SupportedCipherSuite;
use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::{ALL_CIPHER_SUITES, cipher_suite as cs, kx_group};

/// A TLS protocol version tcpmap can be asked to allow (TLS 1.2 and newer only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TlsVersion {
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

/// Parses a TLS version as written in a TLSContext: `v1.2`, `v1.3` (Ambassador), `1.2`,
/// `TLSv1.2`, `TLSv1_3` (Envoy), case-insensitively. TLS 1.0 and 1.1 are refused explicitly.
pub(crate) fn parse_tls_version(s: &str) -> Result<TlsVersion, String> {
    let lower = s.trim().to_ascii_lowercase();
    let bare = lower
        .strip_prefix("tlsv")
        .or_else(|| lower.strip_prefix("tls"))
        .or_else(|| lower.strip_prefix('v'))
        .unwrap_or(&lower)
        .replace('_', ".");
    match bare.as_str() {
        "1.2" => Ok(TlsVersion::V1_2),
        "1.3" => Ok(TlsVersion::V1_3),
        "1.0" | "1.1" | "1" => Err("TLS versions below 1.2 are not supported".to_owned()),
        _ => Err(format!("unknown TLS version {s:?} (expected v1.2 or v1.3)")),
    }
}

/// True for a version below 1.2 (`v1.0`, `v1.1` in any spelling `parse_tls_version` reads):
/// Emissary accepts it, rustls cannot serve it.
pub(crate) fn is_below_1_2(s: &str) -> bool {
    parse_tls_version(s).is_err_and(|e| e.starts_with("TLS versions below 1.2"))
}

/// The key-exchange groups an `ecdh_curves` entry may name (OpenSSL/Envoy names and their
/// aliases), case-insensitively.
const CURVES: &[(&str, &dyn SupportedKxGroup)] = &[
    ("X25519", kx_group::X25519),
    ("prime256v1", kx_group::SECP256R1),
    ("P-256", kx_group::SECP256R1),
    ("secp256r1", kx_group::SECP256R1),
    ("secp384r1", kx_group::SECP384R1),
    ("P-384", kx_group::SECP384R1),
    ("X25519MLKEM768", kx_group::X25519MLKEM768),
];

/// Resolves one `ecdh_curves` name to the provider's key-exchange group; an unknown name is
/// an error naming it and the known ones.
pub(crate) fn curve(name: &str) -> Result<&'static dyn SupportedKxGroup, String> {
    let n = name.trim();
    CURVES
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(n))
        .map(|(_, g)| *g)
        .ok_or_else(|| {
            format!(
                "unknown ecdh_curves entry {name:?} (known: X25519, prime256v1/P-256, \
                 secp384r1/P-384, X25519MLKEM768)"
            )
        })
}

/// Each suite of the provider with its rustls/IANA name and its OpenSSL (Envoy) name.
const NAMES: &[(SupportedCipherSuite, &str, &str)] = &[
    (
        cs::TLS13_AES_128_GCM_SHA256,
        "TLS13_AES_128_GCM_SHA256",
        "TLS_AES_128_GCM_SHA256",
    ),
    (
        cs::TLS13_AES_256_GCM_SHA384,
        "TLS13_AES_256_GCM_SHA384",
        "TLS_AES_256_GCM_SHA384",
    ),
    (
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS13_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
    (
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];

/// Looks up one suite name in either spelling (case-insensitive). OpenSSL's alternative
/// spellings `ECDHE-*-CHACHA20-POLY1305-SHA256` are accepted too.
fn lookup(name: &str) -> Option<SupportedCipherSuite> {
    let name = name.trim();
    let name = name
        .strip_suffix("-SHA256")
        .filter(|n| n.ends_with("CHACHA20-POLY1305"))
        .unwrap_or(name);
    NAMES
        .iter()
        .find(|(_, rustls, openssl)| {
            rustls.eq_ignore_ascii_case(name) || openssl.eq_ignore_ascii_case(name)
        })
        .map(|(suite, _, _)| *suite)
        .filter(|suite| ALL_CIPHER_SUITES.contains(suite))
}

/// Resolves one `cipher_suites` entry to provider suites. An Envoy/BoringSSL equal-preference
/// group (`[A|B]`) resolves to all its members.
pub(super) fn resolve(entry: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    let trimmed = entry.trim();
    let members = match trimmed.strip_prefix('[').and_then(|g| g.strip_suffix(']')) {
        Some(group) => group.split('|').collect::<Vec<_>>(),
        None => vec![trimmed],
    };
    members
        .into_iter()
        .map(|name| lookup(name).ok_or_else(|| format!("cipher suite {name:?} is not supported (rustls/aws-lc-rs offers only ECDHE AEAD suites)")))
        .collect()
}

/// Checks that a `cipher_suites` entry names suites the aws-lc-rs provider offers; the error
/// names the suite.
pub(crate) fn check_cipher_suite(name: &str) -> Result<(), String> {
    resolve(name).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_every_spelling() {
        for s in ["v1.2", "1.2", "TLSv1.2", "TLSv1_2", "tlsv1.2", " V1.2 "] {
            assert_eq!(parse_tls_version(s), Ok(TlsVersion::V1_2), "{s}");
        }
        for s in ["v1.3", "1.3", "TLSv1.3", "TLSv1_3"] {
            assert_eq!(parse_tls_version(s), Ok(TlsVersion::V1_3), "{s}");
        }
        for s in ["v1.0", "v1.1", "TLSv1_0", "TLSv1_1", "1.1"] {
            assert_eq!(
                parse_tls_version(s),
                Err("TLS versions below 1.2 are not supported".to_owned()),
                "{s}"
            );
        }
        for s in ["", "v2", "1.4", "TLS_AUTO", "ssl3", "v1.2x"] {
            assert!(
                parse_tls_version(s)
                    .unwrap_err()
                    .contains("unknown TLS version"),
                "{s}"
            );
        }
        assert!(TlsVersion::V1_2 < TlsVersion::V1_3);
    }

    #[test]
    fn cipher_suites_in_rustls_and_openssl_spellings() {
        for name in [
            "TLS13_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "ECDHE-RSA-CHACHA20-POLY1305-SHA256",
            "ecdhe-ecdsa-aes256-gcm-sha384",
            "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]",
        ] {
            assert_eq!(check_cipher_suite(name), Ok(()), "{name}");
        }
        assert_eq!(
            resolve("[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-RSA-AES128-GCM-SHA256]")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            resolve("ECDHE-RSA-AES128-GCM-SHA256").unwrap(),
            vec![cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        );
        for name in [
            "AES128-SHA",
            "ECDHE-RSA-AES128-SHA",
            "DES-CBC3-SHA",
            "",
            "[ECDHE-RSA-AES128-GCM-SHA256|AES256-SHA]",
        ] {
            let err = check_cipher_suite(name).unwrap_err();
            assert!(err.contains("is not supported"), "{name}: {err}");
        }
        assert!(
            check_cipher_suite("AES128-SHA")
                .unwrap_err()
                .contains("\"AES128-SHA\"")
        );
    }
}
