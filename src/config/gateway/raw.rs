//! Gateway API documents as written: `Gateway`, `TLSRoute`, `TCPRoute`, `ReferenceGrant`,
//! `GatewayClass` and core `Namespace`, typed but unchecked.
//!
//! Owns: which `apiVersion`s carry which kind, and reading the fields tcpmap uses (type
//! problems are warnings: a Gateway API resource that cannot be read is not served, the rest
//! keeps serving). Must not: decide what attaches to what (that is `translate`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_yaml_ng::{Mapping, Value};

use crate::config::ConfigError;
use crate::config::raw::Loc;
use crate::config::source::SourceDoc;

/// The Gateway API group.
pub(crate) const GROUP: &str = "gateway.networking.k8s.io";

/// The versions each kind was served in (Gateway API v1.0 to v1.6).
const VERSIONS: [(&str, &[&str]); 5] = [
    ("Gateway", &["v1", "v1beta1", "v1alpha2"]),
    ("GatewayClass", &["v1", "v1beta1", "v1alpha2"]),
    ("TLSRoute", &["v1", "v1alpha3", "v1alpha2"]),
    ("TCPRoute", &["v1", "v1alpha2"]),
    ("ReferenceGrant", &["v1", "v1beta1", "v1alpha2"]),
];

/// A Gateway API resource tcpmap reads.
#[derive(Debug, Clone)]
pub(crate) enum GatewayResource {
    /// `kind: Gateway`.
    Gateway(RawGateway),
    /// `kind: TLSRoute` or `kind: TCPRoute`.
    Route(RawRoute),
    /// `kind: ReferenceGrant`.
    Grant(RawGrant),
    /// `kind: Namespace` (core `v1`): its labels, for `allowedRoutes` selectors.
    Namespace(RawNamespace),
    /// `kind: Service` (core `v1`): that it exists, for `BackendNotFound`.
    Service {
        /// `metadata.namespace` (`None`: the proxy's).
        namespace: Option<String>,
        /// `metadata.name`.
        name: String,
    },
}

/// A reference as routes and listeners write it (`parentRefs`, `backendRefs`,
/// `certificateRefs`), with the defaults of its field left to the reader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObjRef {
    /// `group` (`None`: the field's default).
    pub group: Option<String>,
    /// `kind` (`None`: the field's default).
    pub kind: Option<String>,
    /// `name`.
    pub name: String,
    /// `namespace` (`None`: the referrer's).
    pub namespace: Option<String>,
    /// `sectionName` (parentRefs).
    pub section: Option<String>,
    /// `port`.
    pub port: Option<i64>,
    /// `weight` (backendRefs).
    pub weight: Option<i64>,
}

/// Which namespaces a listener takes routes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum From {
    /// The Gateway's own namespace (the default).
    #[default]
    Same,
    /// Any namespace.
    All,
    /// Namespaces whose labels the selector matches.
    Selector(LabelSelector),
}

/// A Kubernetes label selector: `matchLabels` and `matchExpressions`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LabelSelector {
    /// `matchLabels`.
    pub labels: BTreeMap<String, String>,
    /// `matchExpressions`: `(key, operator, values)`.
    pub expressions: Vec<(String, String, Vec<String>)>,
}

impl LabelSelector {
    /// True when `labels` satisfy every condition (an unknown operator matches nothing).
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let by_label = self.labels.iter().all(|(k, v)| labels.get(k) == Some(v));
        by_label
            && self.expressions.iter().all(|(k, op, values)| {
                let have = labels.get(k);
                match op.as_str() {
                    "In" => have.is_some_and(|v| values.contains(v)),
                    "NotIn" => have.is_none_or(|v| !values.contains(v)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            })
    }
}

/// One `spec.listeners[]` entry.
#[derive(Debug, Clone)]
pub(crate) struct RawListener {
    /// `name` (routes name it as `sectionName`).
    pub name: String,
    /// `port`.
    pub port: Option<i64>,
    /// `protocol` (`TCP`, `TLS`, `HTTP`, …).
    pub protocol: String,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `tls.mode` (`Terminate` when absent).
    pub tls_mode: Option<String>,
    /// `tls.certificateRefs`.
    pub certificate_refs: Vec<ObjRef>,
    /// `allowedRoutes.namespaces`.
    pub from: From,
    /// `allowedRoutes.kinds` as `(group, kind)` (`None`: the protocol's route kind).
    pub kinds: Option<Vec<(String, String)>>,
}

/// A `Gateway`.
#[derive(Debug, Clone)]
pub(crate) struct RawGateway {
    /// Where it is.
    pub loc: Loc,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `spec.gatewayClassName`.
    pub class: Option<String>,
    /// `spec.addresses[]` of type `IPAddress` (the default type): their values.
    pub addresses: Vec<String>,
    /// `spec.listeners`.
    pub listeners: Vec<RawListener>,
    /// What reading it found (warnings), said only when the Gateway is served.
    pub problems: Vec<ConfigError>,
}

/// Which route kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteKind {
    /// `TCPRoute`: raw relay on a `TCP` listener.
    Tcp,
    /// `TLSRoute`: SNI routing on a `TLS` listener.
    Tls,
}

impl RouteKind {
    /// The kind's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RouteKind::Tcp => "TCPRoute",
            RouteKind::Tls => "TLSRoute",
        }
    }
}

/// A `TLSRoute` or `TCPRoute`.
#[derive(Debug, Clone)]
pub(crate) struct RawRoute {
    /// Where it is.
    pub loc: Loc,
    /// Which kind.
    pub kind: RouteKind,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `metadata.creationTimestamp` (RFC 3339, compared as text: the format sorts).
    pub created: Option<String>,
    /// `spec.parentRefs`.
    pub parents: Vec<ObjRef>,
    /// `spec.hostnames` (TLSRoute).
    pub hostnames: Vec<String>,
    /// `spec.rules[].backendRefs[]`, every rule's.
    pub backends: Vec<ObjRef>,
    /// What reading it found (warnings), said only when a served Gateway is its parent.
    pub problems: Vec<ConfigError>,
}

/// A `ReferenceGrant`.
#[derive(Debug, Clone)]
pub(crate) struct RawGrant {
    /// `metadata.namespace`: the namespace it opens.
    pub namespace: Option<String>,
    /// `spec.from[]`: `(group, kind, namespace)`.
    pub from: Vec<(String, String, String)>,
    /// `spec.to[]`: `(group, kind, name)` (`None`: any name).
    pub to: Vec<(String, String, Option<String>)>,
}

/// A `Namespace`: its name and labels.
#[derive(Debug, Clone)]
pub(crate) struct RawNamespace {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels` (with `kubernetes.io/metadata.name`, as the API server sets it).
    pub labels: BTreeMap<String, String>,
}

/// Reads a Gateway API (or `Namespace`) document: `None` when it is not one; `Some` with the
/// resource (none for a GatewayClass or an unreadable one) and what reading found.
pub(crate) fn classify(
    doc: &Arc<SourceDoc>,
) -> Option<(Option<GatewayResource>, Vec<ConfigError>)> {
    let top = doc.value.as_mapping()?;
    let api = top.get("apiVersion").and_then(Value::as_str)?;
    let kind = top.get("kind").and_then(Value::as_str)?;
    let meta = top.get("metadata").and_then(Value::as_mapping);
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if api == "v1" && kind == "Namespace" {
        let mut labels = string_map(meta.and_then(|m| m.get("labels")));
        let name = name?.to_string();
        labels
            .entry("kubernetes.io/metadata.name".into())
            .or_insert_with(|| name.clone());
        return Some((
            Some(GatewayResource::Namespace(RawNamespace { name, labels })),
            Vec::new(),
        ));
    }
    if api == "v1" && kind == "Service" {
        let name = name?.to_string();
        return Some((
            Some(GatewayResource::Service { namespace, name }),
            Vec::new(),
        ));
    }
    let version = api.strip_prefix(GROUP)?.strip_prefix('/')?;
    let (kind, versions) = VERSIONS.iter().find(|(k, _)| *k == kind)?;
    let loc = Loc {
        doc: doc.clone(),
        kind,
        name: name.unwrap_or("-").to_string(),
        crd: true,
    };
    if !versions.contains(&version) {
        let w = loc.warn(
            &[],
            format!(
                "{kind} is not served in {api} (tcpmap reads {GROUP}/{}); skipped",
                versions.join(", ")
            ),
        );
        return Some((None, vec![w]));
    }
    if name.is_none() {
        return Some((
            None,
            vec![loc.warn(&[], "metadata.name is required; skipped")],
        ));
    }
    let empty = Mapping::new();
    let spec = top
        .get("spec")
        .and_then(Value::as_mapping)
        .unwrap_or(&empty);
    let mut problems = Vec::new();
    let resource = match *kind {
        "Gateway" => {
            let mut g = gateway(loc, namespace, spec, &mut problems);
            g.problems = std::mem::take(&mut problems);
            Some(GatewayResource::Gateway(g))
        }
        "TLSRoute" | "TCPRoute" => {
            let created = meta
                .and_then(|m| m.get("creationTimestamp"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut r = route(loc, namespace, created, spec, &mut problems);
            r.problems = std::mem::take(&mut problems);
            Some(GatewayResource::Route(r))
        }
        "ReferenceGrant" => Some(GatewayResource::Grant(grant(namespace, spec))),
        _ => {
            tracing::debug!(name = ?name, "GatewayClass read (only its name matters)");
            None
        }
    };
    Some((resource, problems))
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A scalar as text (labels may be written unquoted as numbers or booleans).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_of(m: &Mapping, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_string)
}

fn seq<'a>(m: &'a Mapping, key: &str) -> impl Iterator<Item = &'a Mapping> {
    m.get(key)
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Value::as_mapping)
}

/// A reference (`parentRefs`, `backendRefs`, `certificateRefs` entry).
fn obj_ref(m: &Mapping) -> ObjRef {
    ObjRef {
        group: str_of(m, "group"),
        kind: str_of(m, "kind"),
        name: str_of(m, "name").unwrap_or_default(),
        namespace: str_of(m, "namespace"),
        section: str_of(m, "sectionName"),
        port: m.get("port").and_then(Value::as_i64),
        weight: m.get("weight").and_then(Value::as_i64),
    }
}

fn gateway(
    loc: Loc,
    namespace: Option<String>,
    spec: &Mapping,
    problems: &mut Vec<ConfigError>,
) -> RawGateway {
    let mut addresses = Vec::new();
    for a in seq(spec, "addresses") {
        let ty = str_of(a, "type").unwrap_or_else(|| "IPAddress".into());
        match (ty.as_str(), str_of(a, "value")) {
            ("IPAddress", Some(v)) => addresses.push(v),
            _ => problems.push(loc.warn(
                &["addresses"],
                format!("address of type {ty} is not applied (only IPAddress binds)"),
            )),
        }
    }
    let listeners = seq(spec, "listeners")
        .map(|l| {
            let tls = l.get("tls").and_then(Value::as_mapping);
            let allowed = l.get("allowedRoutes").and_then(Value::as_mapping);
            let ns = allowed
                .and_then(|a| a.get("namespaces"))
                .and_then(Value::as_mapping);
            let from = match ns.and_then(|n| str_of(n, "from")).as_deref() {
                Some("All") => From::All,
                Some("Selector") => From::Selector(selector(
                    ns.and_then(|n| n.get("selector"))
                        .and_then(Value::as_mapping),
                )),
                _ => From::Same,
            };
            let kinds = allowed
                .and_then(|a| a.get("kinds"))
                .and_then(Value::as_sequence)
                .map(|ks| {
                    ks.iter()
                        .filter_map(Value::as_mapping)
                        .map(|k| {
                            (
                                str_of(k, "group").unwrap_or_else(|| GROUP.into()),
                                str_of(k, "kind").unwrap_or_default(),
                            )
                        })
                        .collect()
                });
            RawListener {
                name: str_of(l, "name").unwrap_or_default(),
                port: l.get("port").and_then(Value::as_i64),
                protocol: str_of(l, "protocol").unwrap_or_default(),
                hostname: str_of(l, "hostname"),
                tls_mode: tls.and_then(|t| str_of(t, "mode")),
                certificate_refs: tls
                    .map(|t| seq(t, "certificateRefs").map(obj_ref).collect())
                    .unwrap_or_default(),
                from,
                kinds,
            }
        })
        .collect();
    RawGateway {
        namespace,
        class: str_of(spec, "gatewayClassName"),
        addresses,
        listeners,
        problems: Vec::new(),
        loc,
    }
}

fn selector(m: Option<&Mapping>) -> LabelSelector {
    let Some(m) = m else {
        return LabelSelector::default();
    };
    LabelSelector {
        labels: string_map(m.get("matchLabels")),
        expressions: seq(m, "matchExpressions")
            .map(|e| {
                let values = e
                    .get("values")
                    .and_then(Value::as_sequence)
                    .map(|vs| vs.iter().filter_map(scalar).collect())
                    .unwrap_or_default();
                (
                    str_of(e, "key").unwrap_or_default(),
                    str_of(e, "operator").unwrap_or_default(),
                    values,
                )
            })
            .collect(),
    }
}

fn route(
    loc: Loc,
    namespace: Option<String>,
    created: Option<String>,
    spec: &Mapping,
    problems: &mut Vec<ConfigError>,
) -> RawRoute {
    let kind = if loc.kind == "TLSRoute" {
        RouteKind::Tls
    } else {
        RouteKind::Tcp
    };
    let hostnames = spec
        .get("hostnames")
        .and_then(Value::as_sequence)
        .map(|hs| {
            hs.iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    if kind == RouteKind::Tcp && spec.contains_key("hostnames") {
        problems.push(loc.warn(&["hostnames"], "a TCPRoute has no hostnames; ignored"));
    }
    let backends = seq(spec, "rules")
        .flat_map(|r| seq(r, "backendRefs").map(obj_ref))
        .collect();
    RawRoute {
        kind,
        namespace,
        created,
        parents: seq(spec, "parentRefs").map(obj_ref).collect(),
        hostnames,
        backends,
        problems: Vec::new(),
        loc,
    }
}

fn grant(namespace: Option<String>, spec: &Mapping) -> RawGrant {
    RawGrant {
        namespace,
        from: seq(spec, "from")
            .map(|f| {
                (
                    str_of(f, "group").unwrap_or_default(),
                    str_of(f, "kind").unwrap_or_default(),
                    str_of(f, "namespace").unwrap_or_default(),
                )
            })
            .collect(),
        to: seq(spec, "to")
            .map(|t| {
                (
                    str_of(t, "group").unwrap_or_default(),
                    str_of(t, "kind").unwrap_or_default(),
                    str_of(t, "name"),
                )
            })
            .collect(),
    }
}
