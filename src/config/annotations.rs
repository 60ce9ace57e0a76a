//! Emissary's oldest config source: a `kind: Service` whose
//! `metadata.annotations["getambassador.io/config"]` holds YAML documents. Each becomes a
//! document of its own, in the Service's namespace unless it names one, with line numbers
//! pointing into the annotation (exact for a `|` block scalar, what `kubectl` prints for a
//! multi-line value; the annotation's line otherwise).
//!
//! Must not: interpret the documents (that is `raw`).

use serde_yaml_ng::{Mapping, Value};

use super::ConfigError;
use super::source::{SourceDoc, parse_text};

/// The annotation Emissary reads.
pub(crate) const CONFIG_ANNOTATION: &str = "getambassador.io/config";

/// Adds the documents of every Service's config annotation after the Service (the Service
/// itself stays: it is skipped later as a kind tcpmap does not read).
pub(crate) fn expand_annotations(docs: Vec<SourceDoc>) -> (Vec<SourceDoc>, Vec<ConfigError>) {
    let mut out = Vec::with_capacity(docs.len());
    let mut problems = Vec::new();
    for doc in docs {
        let inner = annotation_docs(&doc, &mut problems);
        out.push(doc);
        out.extend(inner);
    }
    (out, problems)
}

/// The documents of `doc`'s config annotation (none when it is not a Service with one).
fn annotation_docs(doc: &SourceDoc, problems: &mut Vec<ConfigError>) -> Vec<SourceDoc> {
    let v = &doc.value;
    if v.get("kind").and_then(Value::as_str) != Some("Service") {
        return Vec::new();
    }
    let meta = v.get("metadata");
    let Some(text) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(CONFIG_ANNOTATION))
        .and_then(Value::as_str)
    else {
        return Vec::new();
    };
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    let key_line = doc.key_line(&["metadata", "annotations", CONFIG_ANNOTATION]);
    // With a `|` block scalar the value's first line is the line after the key.
    let block = doc
        .text
        .lines()
        .nth(key_line.saturating_sub(doc.start))
        .and_then(|l| l.split_once(':').map(|(_, rest)| rest.trim_start()))
        .is_some_and(|rest| rest.starts_with('|'));
    let (inner, errs) = parse_text(&doc.file, text);
    let shift = |line: usize| {
        if block { key_line + line } else { key_line }
    };
    problems.extend(errs.into_iter().map(|mut e| {
        e.line = shift(e.line);
        e
    }));
    inner
        .into_iter()
        .map(|mut d| {
            d.line = shift(d.line);
            d.start = shift(d.start);
            if !block {
                d.text = String::new();
            }
            if let Some(ns) = namespace {
                default_namespace(&mut d.value, ns);
            }
            d
        })
        .collect()
}

/// Sets the namespace of a flat (`namespace`) or CRD-form (`metadata.namespace`) resource
/// that names none.
fn default_namespace(value: &mut Value, ns: &str) {
    let Value::Mapping(top) = value else {
        return;
    };
    let target: &mut Mapping = match top.get_mut("metadata") {
        Some(Value::Mapping(m)) => m,
        _ => top,
    };
    if !target.contains_key("namespace") {
        target.insert(Value::from("namespace"), Value::from(ns));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: data
  annotations:
    getambassador.io/config: |
      ---
      apiVersion: getambassador.io/v2
      kind: TCPMapping
      name: db-mapping
      port: 5432
      service: db:5432
      ---
      apiVersion: getambassador.io/v2
      kind: TCPMapping
      name: other
      namespace: elsewhere
      port: 5433
      service: db:5433
spec:
  ports: [{port: 5432}]
";

    #[test]
    fn annotation_documents_point_into_the_annotation_and_take_the_namespace() {
        let (docs, errs) = parse_text(Path::new("svc.yaml"), SERVICE);
        assert!(errs.is_empty());
        let (docs, errs) = expand_annotations(docs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].line, 9);
        assert_eq!(docs[1].key_line(&["port"]), 12);
        assert_eq!(
            docs[1].value.get("namespace").and_then(Value::as_str),
            Some("data")
        );
        assert_eq!(docs[2].key_line(&["service"]), 20);
        assert_eq!(
            docs[2].value.get("namespace").and_then(Value::as_str),
            Some("elsewhere")
        );
    }

    #[test]
    fn a_syntax_error_in_the_annotation_is_at_its_line() {
        let broken = SERVICE.replace("      port: 5433\n", "      port: [5433\n");
        let (docs, _) = parse_text(Path::new("svc.yaml"), &broken);
        let (_, errs) = expand_annotations(docs);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].line >= 19 && errs[0].line <= 21, "{errs:?}");
    }
}
