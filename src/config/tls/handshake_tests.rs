//! In-memory handshakes (no sockets) between configs built by this module: what a client or
//! server would notice — connects, refuses, which protocol, ALPN and suite are negotiated.

use super::test_pki::{Alg, Ca, Failed, handshake, self_signed};
use super::*;
use rustls::{
    CertificateError, Connection, HandshakeKind, ProtocolVersion, server::ResolvesServerCert,
};

fn cert_key(pair: &(String, String)) -> CertKey {
    parse_cert_key(pair.0.as_bytes(), pair.1.as_bytes()).unwrap()
}

fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
    parse_cert_chain(pem.as_bytes()).unwrap()
}

fn server(pair: &(String, String), params: &TlsParams) -> Arc<ServerConfig> {
    server_config(&cert_key(pair), params, None, false).unwrap()
}

fn insecure(params: &TlsParams) -> Arc<ClientConfig> {
    client_config(None, params, None).unwrap()
}

fn version(conn: &Connection) -> Option<ProtocolVersion> {
    conn.protocol_version()
}

#[test]
fn insecure_client_connects_to_a_self_signed_server() {
    let server = server(
        &self_signed(&["upstream.internal"], Alg::EcdsaP256),
        &TlsParams::default(),
    );
    let (c, s) = handshake(&insecure(&TlsParams::default()), &server, "some.other.name").unwrap();
    assert_eq!(version(&c), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(version(&s), Some(ProtocolVersion::TLSv1_3));
}

/// A server whose certificate does not belong to its signing key.
#[derive(Debug)]
struct Impostor(Arc<CertifiedKey>);

impl ResolvesServerCert for Impostor {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[test]
fn insecure_client_still_checks_handshake_signatures() {
    let (victim_cert, _) = self_signed(&["bank.example"], Alg::EcdsaP256);
    let (_, attacker_key) = self_signed(&["evil.example"], Alg::EcdsaP256);
    let provider = default_provider();
    let key = PrivateKeyDer::from_pem_slice(attacker_key.as_bytes()).unwrap();
    let signer = provider.key_provider.load_private_key(key).unwrap();
    let impostor = CertifiedKey::new(chain(&victim_cert), signer);
    for max in [TlsVersion::V1_2, TlsVersion::V1_3] {
        let server = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Impostor(Arc::new(impostor.clone()))));
        let client = insecure(&TlsParams {
            max_version: Some(max),
            ..Default::default()
        });
        match handshake(&client, &Arc::new(server), "bank.example") {
            Err(Failed::Client(rustls::Error::InvalidCertificate(
                CertificateError::BadSignature,
            ))) => {}
            other => panic!("{max:?}: expected a bad-signature failure, got {other:?}"),
        }
    }
}

#[test]
fn verifying_client_accepts_its_ca_and_refuses_others() {
    let ca = Ca::new("upstream CA");
    let rogue = Ca::new("rogue CA");
    let verify = client_config(None, &TlsParams::default(), Some(&chain(&ca.pem()))).unwrap();
    let good = server(
        &ca.leaf(&["db.internal", "10.1.2.3"], Alg::Rsa2048),
        &TlsParams::default(),
    );
    handshake(&verify, &good, "db.internal").unwrap();
    handshake(&verify, &good, "10.1.2.3").unwrap();

    let bad = server(
        &rogue.leaf(&["db.internal"], Alg::EcdsaP256),
        &TlsParams::default(),
    );
    match handshake(&verify, &bad, "db.internal") {
        Err(Failed::Client(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))) => {
        }
        other => panic!("expected UnknownIssuer, got {other:?}"),
    }
    let self_signed_server = server(
        &self_signed(&["db.internal"], Alg::EcdsaP256),
        &TlsParams::default(),
    );
    assert!(matches!(
        handshake(&verify, &self_signed_server, "db.internal"),
        Err(Failed::Client(_))
    ));
    match handshake(&verify, &good, "cache.internal") {
        Err(Failed::Client(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForNameContext { .. },
        ))) => {}
        other => panic!("expected a wrong-name failure, got {other:?}"),
    }
}

#[test]
fn required_client_certificates_are_enforced() {
    let ca = Ca::new("client CA");
    let ca_chain = chain(&ca.pem());
    let server_pair = self_signed(&["mtls.example"], Alg::EcdsaP256);
    let required = server_config(
        &cert_key(&server_pair),
        &TlsParams::default(),
        Some(&ca_chain),
        true,
    )
    .unwrap();
    let optional = server_config(
        &cert_key(&server_pair),
        &TlsParams::default(),
        Some(&ca_chain),
        false,
    )
    .unwrap();

    for max in [TlsVersion::V1_2, TlsVersion::V1_3] {
        let params = TlsParams {
            max_version: Some(max),
            ..Default::default()
        };
        let anonymous = insecure(&params);
        match handshake(&anonymous, &required, "mtls.example") {
            Err(Failed::Server(rustls::Error::NoCertificatesPresented)) => {}
            other => panic!("{max:?}: expected NoCertificatesPresented, got {other:?}"),
        }
        handshake(&anonymous, &optional, "mtls.example").unwrap();

        let signed = cert_key(&ca.leaf(&["client.example"], Alg::Ed25519));
        let with_cert = client_config(Some(&signed), &params, None).unwrap();
        let (_, s) = handshake(&with_cert, &required, "mtls.example").unwrap();
        assert_eq!(s.peer_certificates().map(<[_]>::len), Some(1));
        handshake(&with_cert, &optional, "mtls.example").unwrap();

        let stranger = cert_key(&self_signed(&["client.example"], Alg::EcdsaP256));
        let with_stranger = client_config(Some(&stranger), &params, None).unwrap();
        for server in [&required, &optional] {
            match handshake(&with_stranger, server, "mtls.example") {
                Err(Failed::Server(rustls::Error::InvalidCertificate(_))) => {}
                other => {
                    panic!("{max:?}: expected the stranger's certificate refused, got {other:?}")
                }
            }
        }
    }
}

#[test]
fn alpn_is_negotiated() {
    let pair = self_signed(&["svc.example"], Alg::EcdsaP256);
    let alpn = |protocols: &[&str]| TlsParams {
        alpn_protocols: protocols.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    };
    let server = server(&pair, &alpn(&["h2", "http/1.1"]));
    let (c, s) = handshake(&insecure(&alpn(&["http/1.1"])), &server, "svc.example").unwrap();
    assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(s.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (c, _) = handshake(&insecure(&TlsParams::default()), &server, "svc.example").unwrap();
    assert_eq!(c.alpn_protocol(), None);
    assert!(matches!(
        handshake(&insecure(&alpn(&["imap"])), &server, "svc.example"),
        Err(Failed::Server(rustls::Error::NoApplicationProtocol))
    ));
}

#[test]
fn version_limits_apply() {
    let pair = self_signed(&["svc.example"], Alg::EcdsaP256);
    let only13 = server(
        &pair,
        &TlsParams {
            min_version: Some(TlsVersion::V1_3),
            ..Default::default()
        },
    );
    let client12 = insecure(&TlsParams {
        max_version: Some(TlsVersion::V1_2),
        ..Default::default()
    });
    assert!(matches!(
        handshake(&client12, &only13, "svc.example"),
        Err(Failed::Server(rustls::Error::PeerIncompatible(_)))
    ));
    let any = server(&pair, &TlsParams::default());
    let (c, _) = handshake(&client12, &any, "svc.example").unwrap();
    assert_eq!(version(&c), Some(ProtocolVersion::TLSv1_2));
}

#[test]
fn cipher_suites_restrict_the_negotiation() {
    let pair = self_signed(&["svc.example"], Alg::EcdsaP256);
    let tls12 = |suite: &str| TlsParams {
        max_version: Some(TlsVersion::V1_2),
        cipher_suites: vec![suite.to_owned()],
        ..Default::default()
    };
    let server = server(&pair, &tls12("ECDHE-ECDSA-AES128-GCM-SHA256"));
    let (c, _) = handshake(&insecure(&TlsParams::default()), &server, "svc.example").unwrap();
    let suite = c.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(
        suite,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
    let chacha_client = insecure(&tls12("ECDHE-ECDSA-CHACHA20-POLY1305"));
    assert!(matches!(
        handshake(&chacha_client, &server, "svc.example"),
        Err(Failed::Server(_))
    ));
    // A list of TLS 1.2 suites leaves TLS 1.3 usable, as Envoy does.
    let mixed = server_config(
        &cert_key(&pair),
        &TlsParams {
            cipher_suites: vec!["ECDHE-ECDSA-AES256-GCM-SHA384".into()],
            ..Default::default()
        },
        None,
        false,
    )
    .unwrap();
    let (c, _) = handshake(&insecure(&TlsParams::default()), &mixed, "svc.example").unwrap();
    assert_eq!(version(&c), Some(ProtocolVersion::TLSv1_3));
    let tls13 = TlsParams {
        cipher_suites: vec!["TLS13_CHACHA20_POLY1305_SHA256".into()],
        ..Default::default()
    };
    let (c, _) = handshake(
        &insecure(&tls13),
        &server_config(&cert_key(&pair), &TlsParams::default(), None, false).unwrap(),
        "svc.example",
    )
    .unwrap();
    assert_eq!(
        c.negotiated_cipher_suite().unwrap().suite(),
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    );
}

#[test]
fn sessions_resume_with_the_same_configs() {
    let ca = Ca::new("resume CA");
    let server = server(
        &ca.leaf(&["svc.example"], Alg::EcdsaP256),
        &TlsParams::default(),
    );
    for max in [TlsVersion::V1_2, TlsVersion::V1_3] {
        let client = client_config(
            None,
            &TlsParams {
                max_version: Some(max),
                ..Default::default()
            },
            Some(&chain(&ca.pem())),
        )
        .unwrap();
        let (first, _) = handshake(&client, &server, "svc.example").unwrap();
        assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full), "{max:?}");
        let (second, _) = handshake(&client, &server, "svc.example").unwrap();
        assert_eq!(
            second.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{max:?}"
        );
    }
}

#[test]
fn crls_refuse_revoked_peers_on_both_sides() {
    // The testkit CA: it signs leaves with chosen serials and CRLs revoking them.
    let ca = crate::testkit::pki::Ca::new("CRL CA");
    let params = TlsParams {
        crls: crate::config::tls::parse_crls(ca.crl(&[7]).as_bytes()).unwrap(),
        ..TlsParams::default()
    };
    // Origination: a revoked upstream certificate.
    let verify = client_config(None, &params, Some(&chain(&ca.cert_pem()))).unwrap();
    let revoked = server(
        &ca.leaf_with_serial(&["db.internal"], 7),
        &TlsParams::default(),
    );
    match handshake(&verify, &revoked, "db.internal") {
        Err(Failed::Client(rustls::Error::InvalidCertificate(CertificateError::Revoked))) => {}
        other => panic!("expected Revoked, got {other:?}"),
    }
    let fine = server(
        &ca.leaf_with_serial(&["db.internal"], 8),
        &TlsParams::default(),
    );
    handshake(&verify, &fine, "db.internal").unwrap();
    // Termination: a revoked client certificate.
    let srv = server_config(
        &cert_key(&ca.leaf(&["db.internal"])),
        &params,
        Some(&chain(&ca.cert_pem())),
        true,
    )
    .unwrap();
    let client = client_config(
        Some(&cert_key(&ca.leaf_with_serial(&["client"], 7))),
        &TlsParams::default(),
        Some(&chain(&ca.cert_pem())),
    )
    .unwrap();
    match handshake(&client, &srv, "db.internal") {
        Err(Failed::Server(rustls::Error::InvalidCertificate(CertificateError::Revoked))) => {}
        other => panic!("expected Revoked, got {other:?}"),
    }
    // A CRL without a CA to verify against is refused when the config is built.
    assert!(server_config(&cert_key(&ca.leaf(&["x"])), &params, None, false).is_err());
}
