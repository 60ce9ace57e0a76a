//! The Gateway API status through the pipeline: the conditions a controller would write, as
//! `check --output json` and `/config` carry them.

use serde_json::Value;

use crate::config::{ConfigInput, Loaded, build_bundle, read};

fn load(yaml: &str) -> Loaded {
    let input = ConfigInput {
        inline: vec![("gw.yaml".into(), yaml.into())],
        ..ConfigInput::default()
    };
    let (bundle, problems) = read(&input);
    build_bundle(&bundle, problems).expect("valid")
}

const CONFIG: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: tcpmap
  listeners:
  - {name: tcp, protocol: TCP, port: 8080}
  - {name: web, protocol: HTTP, port: 80}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs:
  - {name: gw, sectionName: tcp}
  - {name: gw, sectionName: web}
  - {name: gw, sectionName: none}
  - {name: elsewhere}
  rules:
  - backendRefs:
    - {name: db, namespace: data, port: 5432}
    - {name: local, port: 5432}
";

/// `(type, status, reason)` of each condition.
fn conditions(v: &Value) -> Vec<(String, String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap().to_string();
            (s("type"), s("status"), s("reason"))
        })
        .collect()
}

fn c(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}

#[test]
fn each_parent_and_listener_gets_the_conditions_a_controller_would_write() {
    let loaded = load(CONFIG);
    let status = loaded.status_json();
    let all = status.as_array().unwrap();
    assert_eq!(all.len(), 2, "{status:#}");
    let (gw, route) = (&all[0], &all[1]);
    assert_eq!(
        (gw["kind"].as_str(), gw["line"].as_u64()),
        (Some("Gateway"), Some(1))
    );
    assert_eq!(
        conditions(&gw["status"]["conditions"]),
        [
            c("Accepted", "True", "ListenersNotValid"),
            c("Programmed", "True", "Programmed")
        ]
    );
    let listeners = gw["status"]["listeners"].as_array().unwrap();
    assert_eq!(listeners[0]["attachedRoutes"], 1);
    assert_eq!(listeners[0]["supportedKinds"][0]["kind"], "TCPRoute");
    assert_eq!(
        conditions(&listeners[1]["conditions"]),
        [
            c("Accepted", "False", "UnsupportedProtocol"),
            c("ResolvedRefs", "True", "ResolvedRefs"),
            c("Conflicted", "False", "NoConflicts"),
            c("Programmed", "False", "Invalid"),
        ]
    );
    // One entry per parentRef to a served Gateway (`elsewhere` is not one): the backend in
    // another namespace without a grant makes ResolvedRefs False on each.
    let parents = route["status"]["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 3, "{route:#}");
    assert_eq!(parents[0]["parentRef"]["namespace"], "infra");
    assert_eq!(parents[0]["parentRef"]["sectionName"], "tcp");
    let accepted: Vec<_> = parents
        .iter()
        .map(|p| conditions(&p["conditions"]))
        .collect();
    let refs = c("ResolvedRefs", "False", "RefNotPermitted");
    assert_eq!(
        accepted,
        [
            vec![c("Accepted", "True", "Accepted"), refs.clone()],
            vec![
                c("Accepted", "False", "NotAllowedByListeners"),
                refs.clone()
            ],
            vec![c("Accepted", "False", "NoMatchingParent"), refs],
        ]
    );
    assert!(
        parents[0]["conditions"][1]["message"]
            .as_str()
            .unwrap()
            .contains("data/db")
    );
}

#[test]
fn check_prints_a_status_line_per_gateway_listener_and_parent() {
    let text = load(CONFIG).status_text().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "gw.yaml:1: Gateway gw: status: Accepted=True (ListenersNotValid), Programmed=True",
            "gw.yaml:7: Gateway gw: status: listener tcp: Accepted=True, ResolvedRefs=True, Programmed=True; attachedRoutes 1",
            "gw.yaml:8: Gateway gw: status: listener web: Accepted=False (UnsupportedProtocol), ResolvedRefs=True, Programmed=False (Invalid); attachedRoutes 0",
            "gw.yaml:15: TCPRoute r: status: parent Gateway infra/gw section tcp: Accepted=True, ResolvedRefs=False (RefNotPermitted)",
            "gw.yaml:15: TCPRoute r: status: parent Gateway infra/gw section web: Accepted=False (NotAllowedByListeners), ResolvedRefs=False (RefNotPermitted)",
            "gw.yaml:15: TCPRoute r: status: parent Gateway infra/gw section none: Accepted=False (NoMatchingParent), ResolvedRefs=False (RefNotPermitted)",
        ]
    );
    // Without Gateway API resources there is nothing to say.
    let plain = "apiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata: {name: m}\nspec: {port: 9000, service: a:1}\n";
    let loaded = load(plain);
    assert_eq!(loaded.status_text(), "");
    assert_eq!(loaded.status_json(), Value::Array(Vec::new()));
}

#[test]
fn proxy_protocol_asked_by_emissary_resources_is_not_applied_to_gateway_listeners_and_says_so() {
    let gateway = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: tcpmap
  listeners: [{name: tcp, protocol: TCP, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: s, port: 1}]}]
---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: l8080}
spec: {port: 8080, protocolStack: [PROXY, TCP], securityModel: XFP, hostBinding: {namespace: {from: ALL}}}
---
apiVersion: getambassador.io/v2
kind: Module
name: ambassador
config: {use_proxy_proto: true}
";
    let loaded = load(gateway);
    // No `proxy_protocol=required` on the Gateway's listener.
    assert_eq!(
        loaded.render_text(),
        "0.0.0.0:8080 * raw -> s.default:1 (100%) [r]\n"
    );
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    let about = |kind: &str| {
        warnings
            .iter()
            .any(|w| w.contains(kind) && w.contains("TCPRoute r") && w.contains("GEP-2644"))
    };
    assert!(
        about("Listener l8080: port 8080: PROXY protocol does not apply"),
        "{warnings:#?}"
    );
    assert!(
        about("Module ambassador: use_proxy_proto applies to TCPMapping listeners only"),
        "{warnings:#?}"
    );
}
