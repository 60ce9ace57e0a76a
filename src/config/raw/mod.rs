//! YAML documents → raw resources: the flat and CRD forms, `apiVersion`/`kind` dispatch,
//! `ambassador_id` filtering and typed attribute reads.
//!
//! Owns: which documents are ours, where a resource's attributes live, type errors and
//! unknown-attribute warnings. Must not: apply defaults or semantic checks (that is
//! `validate`), read secrets, touch sockets.

pub(crate) mod endpoints;
mod fields;
pub(crate) mod fleet;
mod kinds;
mod listener;

use std::sync::Arc;

use serde_yaml_ng::{Mapping, Value};

pub(crate) use kinds::{RawHost, RawMapping, RawModule, RawTls, RawTlsContext};
pub(crate) use listener::RawListener;

use super::ConfigError;
use super::source::SourceDoc;
use fields::Fields;

/// The `apiVersion`s tcpmap reads.
pub(crate) const API_VERSIONS: [&str; 5] = [
    "ambassador/v0",
    "ambassador/v1",
    "getambassador.io/v1",
    "getambassador.io/v2",
    "getambassador.io/v3alpha1",
];

/// Where a resource is: its document, kind and name. Builds located problems.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    /// The document holding the resource.
    pub doc: Arc<SourceDoc>,
    /// `TCPMapping`, `TLSContext`, `Host`, `Module` or `Listener`.
    pub kind: &'static str,
    /// The resource name (`-` when missing).
    pub name: String,
    /// True for the CRD form (attributes under `spec`).
    pub crd: bool,
}

impl Loc {
    fn line(&self, keys: &[&str]) -> usize {
        if keys.is_empty() {
            return self.doc.line;
        }
        if self.crd {
            let mut path = vec!["spec"];
            path.extend_from_slice(keys);
            self.doc.key_line(&path)
        } else {
            self.doc.key_line(keys)
        }
    }

    /// An error at the line of the attribute path `keys` (document start when not found).
    pub(crate) fn err(&self, keys: &[&str], message: impl Into<String>) -> ConfigError {
        ConfigError::error(
            &self.doc.file,
            self.line(keys),
            self.kind,
            &self.name,
            message,
        )
    }

    /// A warning at the line of the attribute path `keys`.
    pub(crate) fn warn(&self, keys: &[&str], message: impl Into<String>) -> ConfigError {
        ConfigError::warning(
            &self.doc.file,
            self.line(keys),
            self.kind,
            &self.name,
            message,
        )
    }

    /// `FILE:LINE` of the resource, for messages naming another resource.
    pub(crate) fn place(&self) -> String {
        format!("{}:{}", self.doc.file.display(), self.doc.line)
    }
}

/// A resource of a kind tcpmap reads, addressed to our `ambassador_id`.
#[derive(Debug)]
pub(crate) enum Resource {
    /// `kind: TCPMapping`.
    Mapping(RawMapping),
    /// `kind: TLSContext`.
    Context(RawTlsContext),
    /// `kind: Host` with a `tlsSecret`.
    Host(RawHost),
    /// `kind: Module`, `name: ambassador`.
    Module(RawModule),
    /// `kind: Listener`.
    Listener(RawListener),
    /// A Gateway API resource (or a `Namespace`): `config::gateway`.
    Gateway(crate::config::gateway::raw::GatewayResource),
}

/// The result of reading one document.
#[derive(Debug, Default)]
pub(crate) struct Classified {
    /// The resource, when the document is one of ours and readable.
    pub resource: Option<Resource>,
    /// Problems found (type errors, unknown attributes, bad apiVersion).
    pub problems: Vec<ConfigError>,
}

const KINDS: [&str; 5] = ["TCPMapping", "TLSContext", "Host", "Module", "Listener"];
const FLAT_META: [&str; 7] = [
    "apiVersion",
    "kind",
    "name",
    "namespace",
    "ambassador_id",
    "metadata_labels",
    "generation",
];

/// Reads one document; `our_id` is the proxy's `ambassador_id`.
pub(crate) fn classify(doc: Arc<SourceDoc>, our_id: &str) -> Classified {
    let mut out = Classified::default();
    if let Some((resource, problems)) = crate::config::gateway::raw::classify(&doc) {
        out.resource = resource.map(Resource::Gateway);
        out.problems = problems;
        return out;
    }
    let Value::Mapping(top) = &doc.value else {
        tracing::debug!(file = %doc.file.display(), line = doc.line, "skipping a non-mapping document");
        return out;
    };
    let Some(head) = head(&doc, top) else {
        tracing::debug!(file = %doc.file.display(), line = doc.line, "skipping a document of another kind");
        return out;
    };
    let Head {
        kind,
        crd,
        named,
        namespace,
        loc,
    } = head;
    if let Err(problem) = api_version(top, &loc) {
        out.problems.push(problem);
        return out;
    }
    if !named {
        let key: &[&str] = if crd { &[] } else { &["name"] };
        out.problems.push(loc.err(key, "name is required"));
    }
    let empty = Mapping::new();
    let Some(attrs) = attributes(top, &loc, &empty, &mut out.problems) else {
        return out;
    };
    let mut f = Fields::new(&loc, attrs);
    if !crd {
        f.known(&FLAT_META);
    }
    if !addressed_to(&mut f, our_id) {
        tracing::debug!(kind, name = %loc.name, "skipping a resource for another ambassador_id");
        out.problems.append(&mut f.problems);
        return out;
    }
    out.resource = match kind {
        "TCPMapping" => Some(Resource::Mapping(kinds::mapping(&mut f, &loc, namespace))),
        "TLSContext" => Some(Resource::Context(kinds::context(&mut f, &loc, namespace))),
        "Host" => kinds::host(&mut f, &loc, namespace).map(Resource::Host),
        "Listener" => Some(Resource::Listener(listener::listener(&mut f, &loc))),
        _ if loc.name == "ambassador" => Some(Resource::Module(kinds::module(&mut f, &loc))),
        _ => {
            tracing::debug!(name = %loc.name, "skipping a Module other than `ambassador`");
            return out;
        }
    };
    // A TLSContext's or Host's reading problems go with it: validation judges them once it
    // knows whether a TCPMapping uses the resource (validate::usage).
    let problems = f.finish();
    match &mut out.resource {
        Some(Resource::Context(c)) => c.problems.extend(problems),
        Some(Resource::Host(h)) => h.problems.extend(problems),
        Some(_) => out.problems.extend(problems),
        // A Host without a usable `tlsSecret` is HTTP-only: nothing to say about it.
        None => {}
    }
    out
}

/// What a document of a kind tcpmap reads says about itself before its attributes are read.
struct Head {
    /// One of [`KINDS`].
    kind: &'static str,
    /// The CRD form (`spec`/`metadata`) rather than the flat one.
    crd: bool,
    /// Whether it has a name (`loc.name` is `-` when not).
    named: bool,
    namespace: Option<String>,
    loc: Loc,
}

/// The kind, form, name and namespace of the document whose top mapping is `top`; `None` for
/// a kind tcpmap does not read.
fn head(doc: &Arc<SourceDoc>, top: &Mapping) -> Option<Head> {
    let kind = top
        .get("kind")
        .and_then(Value::as_str)
        .and_then(|k| KINDS.iter().find(|x| **x == k))?;
    let crd = top.contains_key("spec") || top.contains_key("metadata");
    let meta = if crd {
        top.get("metadata").and_then(Value::as_mapping)
    } else {
        Some(top)
    };
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let loc = Loc {
        doc: doc.clone(),
        kind,
        name: name.unwrap_or("-").to_string(),
        crd,
    };
    Some(Head {
        kind,
        crd,
        named: name.is_some(),
        namespace,
        loc,
    })
}

/// The problem with the document's `apiVersion`, when it is missing or not one of
/// [`API_VERSIONS`] (the document is then not read further).
fn api_version(top: &Mapping, loc: &Loc) -> Result<(), ConfigError> {
    match top.get("apiVersion").and_then(Value::as_str) {
        Some(v) if API_VERSIONS.contains(&v) => Ok(()),
        Some(v) => Err(loc.err(
            &[],
            format!(
                "unsupported apiVersion `{v}` (expected one of {})",
                API_VERSIONS.join(", ")
            ),
        )),
        None => Err(loc.err(&[], "apiVersion is required")),
    }
}

/// Where the resource's attributes are: `spec` in the CRD form (after checking the keys beside
/// it; a missing or null `spec` is `empty`), the document itself in the flat form. `None`, with
/// the problem pushed, when `spec` is not a mapping.
fn attributes<'a>(
    top: &'a Mapping,
    loc: &Loc,
    empty: &'a Mapping,
    problems: &mut Vec<ConfigError>,
) -> Option<&'a Mapping> {
    if !loc.crd {
        return Some(top);
    }
    let top_loc = Loc {
        crd: false,
        ..loc.clone()
    };
    let mut top_fields = Fields::new(&top_loc, top);
    top_fields.known(&["apiVersion", "kind", "metadata", "spec", "status"]);
    problems.extend(top_fields.finish());
    match top.get("spec") {
        Some(Value::Mapping(m)) => Some(m),
        None | Some(Value::Null) => Some(empty),
        Some(_) => {
            problems.push(loc.err(&[], "`spec` must be a mapping"));
            None
        }
    }
}

/// Whether the resource is addressed to `our_id`: its `ambassador_id` list (`ambassadorId`,
/// the v2/v3 CRD spelling of the same list), `default` when it has none.
fn addressed_to(f: &mut Fields<'_>, our_id: &str) -> bool {
    let snake = f.strings("ambassador_id");
    let camel = f.strings("ambassadorId");
    let ids = snake
        .or(camel)
        .unwrap_or_else(|| vec!["default".to_string()]);
    ids.iter().any(|id| id == our_id)
}

#[cfg(test)]
mod tests;
