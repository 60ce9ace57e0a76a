//! Several `certificateRefs` on one Terminate listener: each hostname is served with the
//! first certificate valid for it, else the first (the default); a ref that does not resolve
//! leaves the listener served with the others and `ResolvedRefs` False.

use base64::Engine as _;

use crate::config::{ConfigInput, Loaded, build_bundle, read};

fn load(yaml: &str) -> Loaded {
    let input = ConfigInput {
        inline: vec![("gw.yaml".into(), yaml.into())],
        ..ConfigInput::default()
    };
    let (bundle, problems) = read(&input);
    build_bundle(&bundle, problems).expect("valid")
}

fn secret(name: &str, names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: infra}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(ck.cert.pem()),
        b64(ck.key_pair.serialize_pem())
    )
}

fn config(refs: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: tcpmap
  listeners:
  - name: tls
    protocol: TLS
    port: 8443
    tls:
      certificateRefs: {refs}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: r, namespace: infra}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [a.example.com, b.example.com, x.wild.example.com, \"*.wild.example.com\", other.example.com]
  rules: [{{backendRefs: [{{name: s, port: 80}}]}}]
"
    ) + &secret("a", &["a.example.com"])
        + &secret("b", &["b.example.com", "*.wild.example.com"])
}

#[test]
fn each_hostname_gets_the_first_certificate_valid_for_it_else_the_first() {
    let loaded = load(&config("[{name: a}, {name: b}, {name: missing}]"));
    let text = loaded.render_text();
    let source = |host: &str| {
        let head = format!("0.0.0.0:8443 {host} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&head))
            .and_then(|l| l.split(" -> ").next())
            .unwrap_or_else(|| panic!("{host} in {text}"))
            .to_string()
    };
    assert_eq!(source("a.example.com"), "terminate(Gateway gw/tls)");
    assert_eq!(source("b.example.com"), "terminate(Gateway gw/tls#2)");
    assert_eq!(source("x.wild.example.com"), "terminate(Gateway gw/tls#2)");
    assert_eq!(source("*.wild.example.com"), "terminate(Gateway gw/tls#2)");
    // No certificate names it: the first is the default.
    assert_eq!(source("other.example.com"), "terminate(Gateway gw/tls)");
    // tlsroute-listener-terminate-supported-kinds: a Terminate listener lists TLSRoute.
    let json = loaded.status_json();
    let listener = &json[0]["status"]["listeners"][0];
    assert_eq!(listener["supportedKinds"][0]["kind"], "TLSRoute");
    assert_eq!(listener["conditions"][0]["reason"], "Accepted");
    // The missing third Secret: served with the other two, ResolvedRefs False.
    let status = loaded.status_text();
    assert!(
        status.contains("listener tls: Accepted=True, ResolvedRefs=False (InvalidCertificateRef), Programmed=True; attachedRoutes 1"),
        "{status}"
    );
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.message.contains("`missing`")
                && w.message.contains("served with its other certificates")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn a_listener_whose_certificates_all_fail_is_not_programmed_and_the_others_serve() {
    let yaml = config("[{name: missing}, {name: a, namespace: elsewhere}]").replace(
        "  listeners:\n",
        "  listeners:\n  - {name: plain, protocol: TCP, port: 9000}\n",
    ) + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {name: t, namespace: infra}\nspec:\n  parentRefs: [{name: gw, sectionName: plain}]\n  rules: [{backendRefs: [{name: s, port: 80}]}]\n";
    let loaded = load(&yaml);
    assert_eq!(
        loaded.render_text(),
        "0.0.0.0:9000 * raw -> s.infra:80 (100%) [t]\n"
    );
    let status = loaded.status_text();
    // The first failing ref names the reason.
    assert!(
        status.contains("listener tls: Accepted=True, ResolvedRefs=False (InvalidCertificateRef), Programmed=False (Invalid)"),
        "{status}"
    );
    assert!(
        status.contains("Gateway gw: status: Accepted=True, Programmed=True"),
        "{status}"
    );
}
