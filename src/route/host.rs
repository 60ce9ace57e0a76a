//! SNI host matching: exact names first, then the most specific `*.suffix` wildcard,
//! case-insensitively, then the catch-all `*` (which also takes clients that send no SNI);
//! and, inside one host pattern, the choice by the client's ALPN offer ([`HostRoutes`]).

use std::sync::Arc;

use super::HostGroup;

/// A map from SNI host patterns (`name` or `*.suffix`) to values.
#[derive(Debug, Clone)]
pub(crate) struct HostMap<T> {
    /// Exact names, lower-cased, sorted for binary search.
    exact: Vec<(String, T)>,
    /// Wildcards as lower-cased `.suffix`, longest (most specific) first.
    wildcard: Vec<(String, T)>,
    /// The catch-all `*`: any name nothing else matches, and no name at all.
    catch_all: Option<T>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        Self {
            exact: Vec::new(),
            wildcard: Vec::new(),
            catch_all: None,
        }
    }
}

/// The catch-all pattern.
pub(crate) const CATCH_ALL: &str = "*";

impl<T> HostMap<T> {
    /// Adds a pattern (`name`, `*.suffix` or [`CATCH_ALL`]); a later insert of the same pattern
    /// replaces the value.
    pub(crate) fn insert(&mut self, pattern: &str, value: T) {
        let lower = pattern.to_ascii_lowercase();
        if lower == CATCH_ALL {
            self.catch_all = Some(value);
        } else if let Some(suffix) = lower.strip_prefix('*') {
            let suffix = suffix.to_string();
            match self.wildcard.iter().position(|(s, _)| *s == suffix) {
                Some(i) => {
                    if let Some(slot) = self.wildcard.get_mut(i) {
                        slot.1 = value;
                    }
                }
                None => {
                    self.wildcard.push((suffix, value));
                    self.wildcard
                        .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
                }
            }
        } else {
            match self.exact.binary_search_by(|(k, _)| k.as_str().cmp(&lower)) {
                Ok(i) => {
                    if let Some(slot) = self.exact.get_mut(i) {
                        slot.1 = value;
                    }
                }
                Err(i) => self.exact.insert(i, (lower, value)),
            }
        }
    }

    /// The value for `name`: exact match first, then the longest matching wildcard, then the
    /// catch-all ([`HostMap::find_map`] taking the first). A wildcard `*.example.com` matches
    /// `a.example.com` and `a.b.example.com`, never `example.com` itself.
    #[cfg(test)]
    pub(crate) fn lookup(&self, name: &str) -> Option<&T> {
        self.find_map(Some(name), Some)
    }

    /// The value for a client that sends no server name: the catch-all, if any.
    #[cfg(test)]
    pub(crate) fn without_name(&self) -> Option<&T> {
        self.find_map(None, Some)
    }

    /// The first `f(value)` that is `Some`, over the values whose patterns match `name`, from
    /// the most specific: the exact name, each matching wildcard (longest first), the
    /// catch-all. Without a name only the catch-all is tried.
    pub(crate) fn find_map<'s, R>(
        &'s self,
        name: Option<&str>,
        mut f: impl FnMut(&'s T) -> Option<R>,
    ) -> Option<R> {
        if let Some(name) = name {
            let name = name.strip_suffix('.').unwrap_or(name);
            let lower;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = name.to_ascii_lowercase();
                lower.as_str()
            } else {
                name
            };
            if let Ok(i) = self.exact.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
                if let Some(r) = self.exact.get(i).and_then(|(_, v)| f(v)) {
                    return Some(r);
                }
            }
            let wild = self
                .wildcard
                .iter()
                .filter(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()));
            for (_, v) in wild {
                if let Some(r) = f(v) {
                    return Some(r);
                }
            }
        }
        self.catch_all.as_ref().and_then(f)
    }

    /// The value of exactly this pattern, as [`HostMap::insert`] takes it.
    pub(crate) fn get_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let lower = pattern.to_ascii_lowercase();
        if lower == CATCH_ALL {
            self.catch_all.as_mut()
        } else if let Some(suffix) = lower.strip_prefix('*') {
            self.wildcard
                .iter_mut()
                .find(|(s, _)| s == suffix)
                .map(|(_, v)| v)
        } else {
            let i = self
                .exact
                .binary_search_by(|(k, _)| k.as_str().cmp(&lower))
                .ok()?;
            self.exact.get_mut(i).map(|(_, v)| v)
        }
    }

    /// True when there are no patterns.
    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.catch_all.is_none()
    }

    /// Number of patterns.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len() + usize::from(self.catch_all.is_some())
    }

    /// All `(pattern, value)` pairs: exact names, then wildcards as `*.suffix`, then the
    /// catch-all as `*`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (String, &T)> {
        self.exact
            .iter()
            .map(|(k, v)| (k.clone(), v))
            .chain(self.wildcard.iter().map(|(s, v)| (format!("*{s}"), v)))
            .chain(self.catch_all.iter().map(|v| (CATCH_ALL.to_string(), v)))
    }
}

/// The groups of one host pattern: those with `match_alpn`, and the one without.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostRoutes {
    /// Groups taking only clients that offer one of their protocols, in config order. No
    /// protocol is listed by two of them (validation), so the choice never depends on order.
    pub by_alpn: Vec<Arc<HostGroup>>,
    /// The group for every other client of the host.
    pub any: Option<Arc<HostGroup>>,
}

impl HostRoutes {
    /// The group for a client offering `alpn` (in its order of preference): the `match_alpn`
    /// group listing the client's most preferred protocol that any group lists, else the
    /// group without `match_alpn`, else none (the next less specific host pattern is tried).
    pub(crate) fn pick<'a, I>(&self, alpn: I) -> Option<&Arc<HostGroup>>
    where
        I: Iterator<Item = &'a [u8]>,
    {
        if !self.by_alpn.is_empty() {
            for offered in alpn {
                let hit = self
                    .by_alpn
                    .iter()
                    .find(|g| g.match_alpn.iter().any(|p| p.as_bytes() == offered));
                if hit.is_some() {
                    return hit;
                }
            }
        }
        self.any.as_ref()
    }

    /// Adds a group: by its `match_alpn`, or as the plain one.
    pub(crate) fn add(&mut self, group: Arc<HostGroup>) {
        if group.match_alpn.is_empty() {
            self.any = Some(group);
        } else {
            self.by_alpn.push(group);
        }
    }

    /// Every group: the `match_alpn` ones, then the plain one.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &Arc<HostGroup>> {
        self.by_alpn.iter().chain(self.any.iter())
    }
}

/// True when `pattern` (`name` or `*.suffix`) matches `host`, with the same rules as [`HostMap`].
pub(crate) fn matches(pattern: &str, host: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let h = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    match p.strip_prefix('*') {
        Some(suffix) => suffix.starts_with('.') && h.len() > suffix.len() && h.ends_with(suffix),
        None => p == h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> HostMap<u32> {
        let mut m = HostMap::default();
        m.insert("my-host-1", 1);
        m.insert("*.example.test", 2);
        m.insert("*.a.example.test", 3);
        m.insert("exact.example.test", 4);
        m
    }

    #[test]
    fn exact_beats_wildcard_and_longest_wildcard_wins() {
        let m = map();
        assert_eq!(m.lookup("my-host-1"), Some(&1));
        assert_eq!(m.lookup("exact.example.test"), Some(&4));
        assert_eq!(m.lookup("x.example.test"), Some(&2));
        assert_eq!(m.lookup("x.a.example.test"), Some(&3));
        assert_eq!(m.lookup("a.example.test"), Some(&2));
    }

    #[test]
    fn case_insensitive_and_trailing_dot() {
        let m = map();
        assert_eq!(m.lookup("MY-HOST-1"), Some(&1));
        assert_eq!(m.lookup("X.Example.Test."), Some(&2));
    }

    #[test]
    fn wildcard_does_not_match_its_apex_or_strangers() {
        let m = map();
        assert_eq!(m.lookup("example.test"), None);
        assert_eq!(m.lookup("my-host-2"), None);
        assert_eq!(m.lookup(""), None);
        assert_eq!(m.lookup("xexample.test"), None);
    }

    #[test]
    fn the_catch_all_comes_last_and_takes_no_name() {
        let mut m = map();
        assert_eq!(m.without_name(), None);
        m.insert("*", 9);
        assert_eq!(m.lookup("my-host-1"), Some(&1));
        assert_eq!(m.lookup("x.a.example.test"), Some(&3));
        assert_eq!(m.lookup("example.test"), Some(&9));
        assert_eq!(m.lookup("stranger"), Some(&9));
        assert_eq!(m.without_name(), Some(&9));
        assert_eq!(m.len(), 5);
        assert_eq!(m.iter().last().map(|(p, v)| (p, *v)), Some(("*".into(), 9)));
        let mut only = HostMap::default();
        only.insert("*", 1);
        assert!(!only.is_empty());
        assert_eq!(only.lookup("anything.at.all"), Some(&1));
    }

    #[test]
    fn matches_follows_the_same_rules() {
        assert!(matches("*.example.test", "a.example.test"));
        assert!(!matches("*.example.test", "example.test"));
        assert!(matches("My-Host", "my-host"));
        assert!(!matches("*example.test", "aexample.test"));
    }

    fn group(name: &str, alpn: &[&str]) -> Arc<HostGroup> {
        Arc::new(HostGroup {
            tls: super::super::HostTls::Passthrough,
            match_alpn: alpn.iter().map(|p| p.to_string()).collect(),
            group: super::super::Group::new(
                Some(name.into()),
                Vec::new(),
                None,
                None,
                Default::default(),
            ),
        })
    }

    fn name(g: Option<&Arc<HostGroup>>) -> Option<&str> {
        g.and_then(|g| g.group.host.as_deref())
    }

    fn offer<'a>(p: &'a [&'a str]) -> impl Iterator<Item = &'a [u8]> + Clone {
        p.iter().map(|p| p.as_bytes())
    }

    #[test]
    fn pick_prefers_the_clients_order_then_the_plain_group() {
        let mut r = HostRoutes::default();
        r.add(group("acme", &["acme-tls/1"]));
        r.add(group("h2", &["h2", "h2c"]));
        assert_eq!(name(r.pick(offer(&["h2", "acme-tls/1"]))), Some("h2"));
        assert_eq!(name(r.pick(offer(&["acme-tls/1"]))), Some("acme"));
        assert_eq!(name(r.pick(offer(&["http/1.1"]))), None);
        r.add(group("plain", &[]));
        assert_eq!(name(r.pick(offer(&["http/1.1"]))), Some("plain"));
        assert_eq!(name(r.pick(offer(&[]))), Some("plain"));
        assert_eq!(r.groups().count(), 3);
    }

    #[test]
    fn find_map_goes_from_the_most_specific_pattern_to_the_catch_all() {
        let mut m: HostMap<u32> = HostMap::default();
        m.insert("a.b.example", 1);
        m.insert("*.b.example", 2);
        m.insert("*.example", 3);
        m.insert("*", 4);
        let mut seen = Vec::new();
        let none: Option<()> = m.find_map(Some("A.B.Example."), |v| {
            seen.push(*v);
            None
        });
        assert_eq!(none, None);
        assert_eq!(seen, [1, 2, 3, 4]);
        assert_eq!(
            m.find_map(Some("x.b.example"), |v| (*v > 2).then_some(*v)),
            Some(3)
        );
        assert_eq!(m.find_map(None, |v| Some(*v)), Some(4));
        assert_eq!(
            m.find_map(Some("a.b.example"), |v| Some(*v)),
            m.lookup("a.b.example").copied()
        );
        *m.get_mut("*.B.example").unwrap() = 20;
        assert_eq!(m.lookup("q.b.example"), Some(&20));
        assert!(m.get_mut("*.nothing").is_none());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const PROTOS: [&str; 5] = ["acme-tls/1", "h2", "http/1.1", "x", "y"];

        proptest! {
            /// The pick is a group listing an offered protocol whenever any group lists one,
            /// and the first such protocol of the client's order; else the plain group.
            #[test]
            fn pick_is_the_first_offered_listed_protocol(
                lists in proptest::collection::vec(proptest::collection::btree_set(0usize..5, 1..3), 0..4),
                plain in any::<bool>(),
                offered in proptest::collection::vec(0usize..5, 0..6),
            ) {
                let mut r = HostRoutes::default();
                let mut taken = std::collections::BTreeSet::new();
                for (i, l) in lists.iter().enumerate() {
                    // Validation keeps lists of one host disjoint.
                    let l: Vec<&str> = l.iter().filter(|p| taken.insert(**p)).map(|p| PROTOS[*p]).collect();
                    if !l.is_empty() {
                        r.add(group(&format!("g{i}"), &l));
                    }
                }
                if plain {
                    r.add(group("plain", &[]));
                }
                let offer: Vec<&str> = offered.iter().map(|p| PROTOS[*p]).collect();
                let got = r.pick(offer.iter().map(|p| p.as_bytes()));
                let first_listed = offer.iter().find(|p| r.by_alpn.iter().any(|g| g.match_alpn.iter().any(|m| m == *p)));
                match first_listed {
                    Some(p) => prop_assert!(got.is_some_and(|g| g.match_alpn.iter().any(|m| m == p))),
                    None if plain => prop_assert_eq!(name(got), Some("plain")),
                    None => prop_assert!(got.is_none()),
                }
            }
        }
    }
}
