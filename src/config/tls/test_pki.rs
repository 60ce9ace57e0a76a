//! Test-only certificates (made with rcgen at test time, RSA keys and legacy key formats via the
//! `openssl` CLI) and an in-memory handshake pump between a rustls client and server.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SignatureAlgorithm,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// Key algorithms the tests cover.
#[derive(Debug, Clone, Copy)]
pub(super) enum Alg {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa2048,
}

/// A fresh private key of `alg`.
pub(super) fn key(alg: Alg) -> KeyPair {
    let sig: &'static SignatureAlgorithm = match alg {
        Alg::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Alg::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        Alg::Ed25519 => &rcgen::PKCS_ED25519,
        Alg::Rsa2048 => {
            let pem = openssl(
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ],
                "",
            );
            return KeyPair::from_pem(&pem).unwrap();
        }
    };
    KeyPair::generate_for(sig).unwrap()
}

/// Runs the `openssl` CLI with `input` on stdin and returns its stdout.
pub(super) fn openssl(args: &[&str], input: &str) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the openssl CLI is needed for RSA keys and legacy key formats");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success(), "openssl {args:?} failed");
    out
}

/// Rewrites a PKCS#8 key PEM in its traditional form (SEC1 for EC, PKCS#1 for RSA).
pub(super) fn traditional(pkcs8_pem: &str) -> String {
    openssl(&["pkey", "-traditional"], pkcs8_pem)
}

/// A certificate authority.
pub(super) struct Ca {
    pub(super) cert: rcgen::Certificate,
    pub(super) key: KeyPair,
}

impl Ca {
    pub(super) fn new(name: &str) -> Ca {
        let key = key(Alg::EcdsaP256);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    /// A leaf for `names` with a key of `alg`: (cert PEM, PKCS#8 key PEM).
    pub(super) fn leaf(&self, names: &[&str], alg: Alg) -> (String, String) {
        let key = key(alg);
        let cert = leaf_params(names)
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub(super) fn pem(&self) -> String {
        self.cert.pem()
    }
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params
}

/// A self-signed leaf for `names`: (cert PEM, PKCS#8 key PEM).
pub(super) fn self_signed(names: &[&str], alg: Alg) -> (String, String) {
    let key = key(alg);
    let cert = leaf_params(names).self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Which side of an in-memory handshake failed, and why.
#[derive(Debug)]
pub(super) enum Failed {
    Client(rustls::Error),
    Server(rustls::Error),
}

/// Moves every pending TLS byte from `from` to `to` and lets `to` process them.
fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}

/// Runs a handshake between the two configs (client asks for `server_name`) and exchanges one
/// message each way; returns both connections afterwards.
pub(super) fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    server_name: &str,
) -> Result<(Connection, Connection), Failed> {
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut c = Connection::Client(ClientConnection::new(client.clone(), name).unwrap());
    let mut s = Connection::Server(ServerConnection::new(server.clone()).unwrap());
    for _ in 0..10 {
        transfer(&mut c, &mut s).map_err(Failed::Server)?;
        transfer(&mut s, &mut c).map_err(Failed::Client)?;
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
    }
    assert!(
        !c.is_handshaking() && !s.is_handshaking(),
        "handshake did not finish"
    );
    c.writer().write_all(b"ping").unwrap();
    transfer(&mut c, &mut s).map_err(Failed::Server)?;
    s.writer().write_all(b"pong").unwrap();
    transfer(&mut s, &mut c).map_err(Failed::Client)?;
    let mut got = [0u8; 4];
    s.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    c.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
    Ok((c, s))
}
