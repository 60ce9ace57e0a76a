//! Typed reads of a resource's attributes that collect problems instead of stopping.
//!
//! Every read marks its key as known; `finish` turns the keys nobody asked for into
//! "unknown attribute" warnings, so typos are visible. Type errors are reported once here;
//! the caller sees `None` and `present(key)` tells it the key was there.

use std::collections::BTreeSet;

use serde_yaml_ng::{Mapping, Value};

use super::Loc;
use crate::config::ConfigError;

/// `"true"` / `"false"` (any case) as a boolean.
pub(crate) fn string_bool(s: &str) -> Option<bool> {
    match s.trim() {
        t if t.eq_ignore_ascii_case("true") => Some(true),
        t if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Reads attributes of one resource.
pub(crate) struct Fields<'a> {
    loc: &'a Loc,
    map: &'a Mapping,
    used: BTreeSet<String>,
    /// Type errors found so far.
    pub(crate) problems: Vec<ConfigError>,
}

impl<'a> Fields<'a> {
    /// Reads `map`, whose problems are reported at `loc`.
    pub(crate) fn new(loc: &'a Loc, map: &'a Mapping) -> Self {
        Self {
            loc,
            map,
            used: BTreeSet::new(),
            problems: Vec::new(),
        }
    }

    /// Marks keys as known without reading them.
    pub(crate) fn known(&mut self, keys: &[&str]) {
        self.used.extend(keys.iter().map(|k| k.to_string()));
    }

    /// The keys present in the map (as strings).
    pub(crate) fn present(&self) -> BTreeSet<String> {
        self.map
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect()
    }

    /// The raw value of `key` (null counts as absent).
    pub(crate) fn value(&mut self, key: &str) -> Option<&'a Value> {
        self.used.insert(key.to_string());
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn wrong(&mut self, key: &str, what: &str) {
        self.problems
            .push(self.loc.err(&[key], format!("`{key}` must be {what}")));
    }

    /// A string attribute.
    pub(crate) fn string(&mut self, key: &str) -> Option<String> {
        match self.value(key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.wrong(key, "a string");
                None
            }
        }
    }

    /// An integer attribute.
    pub(crate) fn integer(&mut self, key: &str) -> Option<i64> {
        match self.value(key)? {
            Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
            _ => {
                self.wrong(key, "an integer");
                None
            }
        }
    }

    /// An integer attribute that Emissary's CRD types as a string (`idle_timeout_ms`): an
    /// integer, or a string holding one, are both read without a warning.
    pub(crate) fn integer_or_string(&mut self, key: &str) -> Option<i64> {
        match self.value(key)? {
            Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
            Value::String(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            _ => {
                self.wrong(key, "an integer (or a string holding one)");
                None
            }
        }
    }

    /// A boolean attribute. The strings `"true"` and `"false"` (what a templated value or a
    /// quoted YAML scalar gives) are read as the boolean, with a warning.
    pub(crate) fn boolean(&mut self, key: &str) -> Option<bool> {
        match self.value(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match string_bool(s) {
                Some(b) => {
                    self.problems.push(self.loc.warn(
                        &[key],
                        format!("`{key}` is the string {s:?}; read as the boolean {b}"),
                    ));
                    Some(b)
                }
                None => {
                    self.wrong(key, "true or false");
                    None
                }
            },
            _ => {
                self.wrong(key, "true or false");
                None
            }
        }
    }

    /// A list of strings; a single string is split at commas (Ambassador's `alpn_protocols`).
    pub(crate) fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        match self.value(key)? {
            Value::String(s) => Some(
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
            ),
            Value::Sequence(items) => {
                let out: Option<Vec<String>> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect();
                if out.is_none() {
                    self.wrong(key, "a list of strings");
                }
                out
            }
            _ => {
                self.wrong(key, "a list of strings");
                None
            }
        }
    }

    /// A nested mapping.
    pub(crate) fn mapping(&mut self, key: &str) -> Option<&'a Mapping> {
        match self.value(key)? {
            Value::Mapping(m) => Some(m),
            _ => {
                self.wrong(key, "a mapping");
                None
            }
        }
    }

    /// Type errors plus one warning per attribute nobody read.
    pub(crate) fn finish(self) -> Vec<ConfigError> {
        let mut out = self.problems;
        for key in self.map.keys() {
            let name = match key {
                Value::String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            if !self.used.contains(&name) {
                out.push(
                    self.loc
                        .warn(&[&name], format!("unknown attribute `{name}` (ignored)")),
                );
            }
        }
        out
    }
}
