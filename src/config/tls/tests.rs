//! PEM parsing and config-building errors, with certificates generated at test time.

use super::test_pki::{Alg, Ca, self_signed, traditional};
use super::*;

fn insecure_client() -> Arc<ClientConfig> {
    client_config(None, &TlsParams::default(), None).unwrap()
}

/// Parses the pair, then proves the key signs for the certificate in a real handshake.
fn assert_usable(cert_pem: &str, key_pem: &str) {
    let ck = parse_cert_key(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let server = server_config(&ck, &TlsParams::default(), None, false).unwrap();
    test_pki::handshake(&insecure_client(), &server, "svc.example").unwrap();
}

#[test]
fn every_key_type_and_format_parses_and_signs() {
    let ca = Ca::new("formats CA");
    for alg in [Alg::EcdsaP256, Alg::EcdsaP384, Alg::Ed25519, Alg::Rsa2048] {
        let (cert, pkcs8) = ca.leaf(&["svc.example"], alg);
        assert!(pkcs8.contains("BEGIN PRIVATE KEY"), "{alg:?}");
        assert_usable(&cert, &pkcs8);
        if !matches!(alg, Alg::Ed25519) {
            let legacy = traditional(&pkcs8);
            let marker = if matches!(alg, Alg::Rsa2048) {
                "BEGIN RSA PRIVATE KEY"
            } else {
                "BEGIN EC PRIVATE KEY"
            };
            assert!(legacy.contains(marker), "{alg:?}: {legacy}");
            assert_usable(&cert, &legacy);
        }
    }
}

#[test]
fn chain_keeps_every_certificate_leaf_first() {
    let ca = Ca::new("chain CA");
    let (leaf, key) = ca.leaf(&["svc.example"], Alg::EcdsaP256);
    let bundle = format!("{leaf}{}", ca.pem());
    let ck = parse_cert_key(bundle.as_bytes(), key.as_bytes()).unwrap();
    assert_eq!(ck.chain.len(), 2);
    assert_eq!(ck.chain[1], *ca.cert.der());
    // Extra PEM sections (e.g. openssl's EC PARAMETERS) are skipped.
    let with_params = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{key}"
    );
    assert!(parse_cert_key(leaf.as_bytes(), with_params.as_bytes()).is_ok());
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let ca = Ca::new("mismatch CA");
    let (cert_a, _) = ca.leaf(&["a.example"], Alg::EcdsaP256);
    for alg in [Alg::EcdsaP256, Alg::Ed25519, Alg::Rsa2048] {
        let (_, key_b) = ca.leaf(&["b.example"], alg);
        let err = parse_cert_key(cert_a.as_bytes(), key_b.as_bytes()).unwrap_err();
        assert_eq!(err, "private key does not match the certificate", "{alg:?}");
    }
    // The CA's certificate with the leaf's key: the key must match the *first* certificate.
    let (leaf, key) = ca.leaf(&["a.example"], Alg::EcdsaP256);
    let wrong_order = format!("{}{leaf}", ca.pem());
    assert!(parse_cert_key(wrong_order.as_bytes(), key.as_bytes()).is_err());
}

#[test]
fn empty_and_garbage_pem_are_refused() {
    let (cert, key) = self_signed(&["svc.example"], Alg::EcdsaP256);
    assert_eq!(
        parse_cert_chain(b"").unwrap_err(),
        "no certificate found in PEM"
    );
    assert_eq!(
        parse_cert_chain(b"not a pem at all").unwrap_err(),
        "no certificate found in PEM"
    );
    assert_eq!(
        parse_cert_chain(key.as_bytes()).unwrap_err(),
        "no certificate found in PEM"
    );
    assert!(
        parse_cert_chain(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
            .is_err()
    );
    assert_eq!(
        parse_cert_key(cert.as_bytes(), b"").unwrap_err(),
        "no private key found in PEM"
    );
    assert_eq!(
        parse_cert_key(cert.as_bytes(), cert.as_bytes()).unwrap_err(),
        "no private key found in PEM"
    );
    let junk_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert!(
        parse_cert_key(cert.as_bytes(), junk_key.as_bytes())
            .unwrap_err()
            .starts_with("unsupported private key")
    );
    let junk_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(parse_cert_key(junk_cert.as_bytes(), key.as_bytes()).is_err());
}

#[test]
fn debug_never_prints_the_key() {
    let (cert, key) = self_signed(&["svc.example"], Alg::EcdsaP256);
    let ck = parse_cert_key(cert.as_bytes(), key.as_bytes()).unwrap();
    assert_eq!(
        format!("{ck:?}"),
        r#"CertKey { chain_len: 1, key: "<redacted>" }"#
    );
    assert_eq!(format!("{:?}", ck.clone()), format!("{ck:?}"));
}

#[test]
fn bad_params_are_errors() {
    let (cert, key) = self_signed(&["svc.example"], Alg::EcdsaP256);
    let ck = parse_cert_key(cert.as_bytes(), key.as_bytes()).unwrap();
    let ca = parse_cert_chain(cert.as_bytes()).unwrap();
    let err = server_config(&ck, &TlsParams::default(), None, true).unwrap_err();
    assert!(err.contains("cert_required needs a CA"), "{err}");
    let inverted = TlsParams {
        min_version: Some(TlsVersion::V1_3),
        max_version: Some(TlsVersion::V1_2),
        ..Default::default()
    };
    assert!(
        server_config(&ck, &inverted, None, false)
            .unwrap_err()
            .contains("above max_tls_version")
    );
    assert!(client_config(None, &inverted, None).is_err());
    let unknown = TlsParams {
        cipher_suites: vec!["RC4-MD5".into()],
        ..Default::default()
    };
    assert!(
        server_config(&ck, &unknown, None, false)
            .unwrap_err()
            .contains("\"RC4-MD5\"")
    );
    assert!(
        client_config(None, &unknown, Some(&ca))
            .unwrap_err()
            .contains("\"RC4-MD5\"")
    );
    let only13_on_12 = TlsParams {
        max_version: Some(TlsVersion::V1_2),
        cipher_suites: vec!["TLS13_AES_128_GCM_SHA256".into()],
        ..Default::default()
    };
    assert!(
        server_config(&ck, &only13_on_12, None, false)
            .unwrap_err()
            .contains("no chosen cipher suite")
    );
    let empty_alpn = TlsParams {
        alpn_protocols: vec![String::new()],
        ..Default::default()
    };
    assert!(
        server_config(&ck, &empty_alpn, None, false)
            .unwrap_err()
            .contains("ALPN")
    );
    assert!(
        client_config(None, &TlsParams::default(), Some(&[]))
            .unwrap_err()
            .contains("no CA certificate")
    );
}

#[test]
fn server_config_enables_tickets_and_alpn() {
    let (cert, key) = self_signed(&["svc.example"], Alg::EcdsaP256);
    let ck = parse_cert_key(cert.as_bytes(), key.as_bytes()).unwrap();
    let params = TlsParams {
        alpn_protocols: vec!["h2".into(), "http/1.1".into()],
        ..Default::default()
    };
    let server = server_config(&ck, &params, None, false).unwrap();
    assert!(server.ticketer.enabled());
    assert_eq!(
        server.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn server_prefers_aes128_unless_suites_are_chosen() {
    let ca = Ca::new("order CA");
    let (cert, key) = ca.leaf(&["svc.example"], Alg::EcdsaP256);
    let ck = parse_cert_key(cert.as_bytes(), key.as_bytes()).unwrap();
    // A client listing AES-256 first (as rustls' default order does).
    let mut provider = default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
    let client = Arc::new(
        ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(any_cert::AcceptAnyServerCert {
                algorithms: default_provider().signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    );
    let server = server_config(&ck, &TlsParams::default(), None, false).unwrap();
    let (_, s) = test_pki::handshake(&client, &server, "svc.example").unwrap();
    let suite = s.negotiated_cipher_suite().map(|s| s.suite());
    assert_eq!(suite, Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
    // A user-chosen list keeps the client's order.
    let chosen = TlsParams {
        cipher_suites: vec![
            "TLS13_AES_128_GCM_SHA256".to_owned(),
            "TLS13_AES_256_GCM_SHA384".to_owned(),
        ],
        ..TlsParams::default()
    };
    let server = server_config(&ck, &chosen, None, false).unwrap();
    let (_, s) = test_pki::handshake(&client, &server, "svc.example").unwrap();
    let suite = s.negotiated_cipher_suite().map(|s| s.suite());
    assert_eq!(suite, Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384));
}
