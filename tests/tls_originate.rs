//! Origination (`tls` set): with and without termination, with and without a client
//! certificate, and with verification when the context has a CA.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::net;
use common::pki::{Ca, write_ca_secret, write_secret};
use common::proxy;
use common::yaml::{mapping_with, tls_context};

#[test]
fn origination_only_plain_client_tls_upstream() {
    let upstream_ca = Ca::new("upstream CA");
    let (ucert, ukey) = upstream_ca.leaf(&["localhost"]);
    let up = net::tls_banner(
        "127.0.0.1:0",
        "tls-upstream",
        net::tls_server_config(&ucert, &ukey, None),
    );
    let (_p, port) = proxy::start_port(None, |port| {
        mapping_with(
            "orig",
            port,
            format!("localhost:{}", up.port()),
            "tls: true\n",
        )
    });
    let mut s = net::connect(net::local(port));
    // Plain bytes in, TLS to the upstream; SNI is the service's DNS name (ext).
    assert_eq!(
        net::read_line(&mut s),
        "tls-upstream client-cert=none sni=localhost"
    );
    net::roundtrip(&mut s, b"encrypted on the way out");
}

#[test]
fn https_service_scheme_originates_too() {
    let (ucert, ukey) = common::pki::self_signed(&["localhost"]);
    let up = net::tls_banner(
        "127.0.0.1:0",
        "tls-upstream",
        net::tls_server_config(&ucert, &ukey, None),
    );
    let (_p, port) = proxy::start_port(None, |port| {
        format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: orig-v3\nspec:\n  address: 127.0.0.1\n  port: {port}\n  service: https://localhost:{}\n",
            up.port()
        )
    });
    let mut s = net::connect(net::local(port));
    assert!(net::read_line(&mut s).starts_with("tls-upstream"));
}

/// The seed's termination + origination example.
#[test]
fn terminate_then_originate_with_and_without_client_cert() {
    let front = Ca::new("front CA");
    let client_ca = Ca::new("origination client CA");
    let dir = tempfile::tempdir().unwrap();
    let (fc, fk) = front.leaf(&["my-host-1", "my-host-2"]);
    write_secret(dir.path(), "supersecret", &fc, &fk);
    let (oc, ok) = client_ca.leaf(&["tcpmap-origination"]);
    write_secret(dir.path(), "othersecret", &oc, &ok);
    let (uc, uk) = common::pki::self_signed(&["localhost", "upstream.internal"]);
    let server = net::tls_server_config(&uc, &uk, Some(&client_ca.cert_pem()));
    let up1 = net::tls_banner("127.0.0.1:0", "upstream-host-1", server.clone());
    let up2 = net::tls_banner("127.0.0.1:0", "upstream-host-2", server);
    let (_p, port) = proxy::start_port(Some(dir.path()), |port| {
        format!(
            r#"---
apiVersion: ambassador/v1
kind: TLSContext
name: my-context
hosts: [my-host-1, my-host-2]
secret: supersecret
---
apiVersion: ambassador/v1
kind: TLSContext
name: origination-context
secret: othersecret
sni: upstream.internal
---
apiVersion: ambassador/v1
kind: TCPMapping
name: test_mapping
address: 127.0.0.1
port: {port}
host: my-host-1
tls: true
service: localhost:{}
---
apiVersion: ambassador/v1
kind: TCPMapping
name: test_mapping_2
address: 127.0.0.1
port: {port}
host: my-host-2
tls: origination-context
service: localhost:{}
"#,
            up1.port(),
            up2.port()
        )
    });
    let cfg = net::tls_client_config(&front.cert_pem(), None);
    let mut a = net::tls_connect(net::local(port), "my-host-1", cfg.clone()).unwrap();
    assert_eq!(
        net::read_line(&mut a),
        "upstream-host-1 client-cert=none sni=localhost"
    );
    net::roundtrip(&mut a, b"re-encrypted 1");
    let mut b = net::tls_connect(net::local(port), "my-host-2", cfg).unwrap();
    assert_eq!(
        net::read_line(&mut b),
        "upstream-host-2 client-cert=tcpmap-origination sni=upstream.internal"
    );
    net::roundtrip(&mut b, b"re-encrypted 2");
}

#[test]
fn with_a_ca_a_wrong_upstream_certificate_is_refused() {
    let trusted = Ca::new("trusted upstream CA");
    let dir = tempfile::tempdir().unwrap();
    write_ca_secret(dir.path(), "upstream-ca", &trusted.cert_pem());
    // Good upstream: certificate from the trusted CA for the right name.
    let (gc, gk) = trusted.leaf(&["localhost"]);
    let good = net::tls_banner(
        "127.0.0.1:0",
        "good",
        net::tls_server_config(&gc, &gk, None),
    );
    // Bad upstream: self-signed.
    let (bc, bk) = common::pki::self_signed(&["localhost"]);
    let bad = net::tls_banner("127.0.0.1:0", "bad", net::tls_server_config(&bc, &bk, None));
    let (_p, [p1, p2]) = proxy::start_ports(
        Some(dir.path()),
        |[p1, p2]| {
            tls_context("verify", "ca_secret: upstream-ca\n")
                + &mapping_with(
                    "good",
                    p1,
                    format!("localhost:{}", good.port()),
                    "tls: verify\n",
                )
                + &mapping_with(
                    "bad",
                    p2,
                    format!("localhost:{}", bad.port()),
                    "tls: verify\n",
                )
        },
        |b| b,
    );
    let mut s = net::connect(net::local(p1));
    assert!(net::read_line(&mut s).starts_with("good"));
    let mut s = net::connect(net::local(p2));
    assert!(
        net::closed_within(&mut s, std::time::Duration::from_secs(3)),
        "a wrong certificate must be refused"
    );
}
