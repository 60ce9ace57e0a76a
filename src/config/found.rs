//! What kinds of documents a config holds, for the warning a config without any TCPMapping
//! gets (a `kubectl get` export of the wrong resources, a ConfigMap mounted at the wrong path):
//! `no TCPMapping (found: List 1, Mapping 3)`.
//!
//! Must not: interpret the documents beyond their `kind`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value;

use super::ConfigError;
use super::source::SourceDoc;

/// Documents per `kind`, a List counted itself and its items by their kinds (one level).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    kinds: BTreeMap<String, usize>,
}

impl Found {
    /// The tally of `docs` as read (Lists not yet expanded).
    pub(crate) fn of(docs: &[SourceDoc]) -> Found {
        let mut found = Found::default();
        for doc in docs {
            found.add(&doc.value);
            if kind(&doc.value) == "List" {
                let items = doc.value.get("items").and_then(Value::as_sequence);
                for item in items.into_iter().flatten() {
                    found.add(item);
                }
            }
        }
        found
    }

    fn add(&mut self, value: &Value) {
        *self.kinds.entry(kind(value).to_string()).or_default() += 1;
    }

    /// `List 1, Mapping 3` (by kind name), or `nothing`.
    pub(crate) fn summary(&self) -> String {
        if self.kinds.is_empty() {
            return "nothing".into();
        }
        let parts: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        parts.join(", ")
    }

    /// The warning for a config without a TCPMapping for `our_id` (nor a Gateway API route
    /// served for a Gateway of `class`), at line 1 of `file` (the first config source).
    pub(crate) fn no_mapping_warning(&self, file: &Path, our_id: &str, class: &str) -> ConfigError {
        let gateway_api = ["Gateway", "TCPRoute", "TLSRoute"]
            .iter()
            .any(|k| self.kinds.contains_key(*k));
        let message = if gateway_api {
            format!(
                "no TCPMapping, and no TCPRoute or TLSRoute bound to a Gateway of class `{class}` (--gateway-class) (found: {})",
                self.summary()
            )
        } else if self.kinds.contains_key("TCPMapping") {
            format!(
                "no TCPMapping for ambassador_id `{our_id}` (found: {})",
                self.summary()
            )
        } else {
            format!("no TCPMapping (found: {})", self.summary())
        };
        ConfigError::warning(file, 1, "Config", "-", message)
    }
}

/// A document's `kind`; `(no kind)` when it has none.
fn kind(value: &Value) -> &str {
    value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("(no kind)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::parse_text;

    #[test]
    fn lists_count_themselves_and_their_items() {
        let text = "kind: List\nitems:\n- kind: Mapping\n- kind: Mapping\n---\nkind: Mapping\n---\nfoo: 1\n";
        let (docs, _) = parse_text(Path::new("all.yaml"), text);
        let found = Found::of(&docs);
        assert_eq!(found.summary(), "(no kind) 1, List 1, Mapping 3");
        let w = found.no_mapping_warning(Path::new("all.yaml"), "default", "tcpmap");
        assert_eq!(
            w.to_string(),
            "warning: all.yaml:1: Config -: no TCPMapping (found: (no kind) 1, List 1, Mapping 3)"
        );
        assert_eq!(Found::default().summary(), "nothing");
    }

    #[test]
    fn mappings_for_another_id_are_named_as_such() {
        let (docs, _) = parse_text(Path::new("a.yaml"), "kind: TCPMapping\n");
        let w = Found::of(&docs).no_mapping_warning(Path::new("a.yaml"), "blue", "tcpmap");
        assert!(
            w.message
                .starts_with("no TCPMapping for ambassador_id `blue` (found: TCPMapping 1)"),
            "{w}"
        );
    }
}
