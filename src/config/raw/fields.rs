//! Typed reads of a resource's attributes that collect problems instead of stopping.
//!
//! Every read marks its key as known; `finish` turns the keys nobody asked for into
//! "unknown attribute" warnings, so typos are visible. Type errors are reported once here;
//! the caller sees `None` and `present(key)` tells it the key was there.

use std::collections::BTreeSet;

use serde_yaml_ng::{Mapping, Value};

use super::Loc;
use crate::config::ConfigError;

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

    /// A boolean attribute.
    pub(crate) fn boolean(&mut self, key: &str) -> Option<bool> {
        match self.value(key)? {
            Value::Bool(b) => Some(*b),
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
