//! SNI host matching: exact names first, then the most specific `*.suffix` wildcard,
//! case-insensitively, then the catch-all `*` (which also takes clients that send no SNI).

/// A map from SNI host patterns (`name` or `*.suffix`) to values.
#[derive(Debug, Clone)]
pub struct HostMap<T> {
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
pub const CATCH_ALL: &str = "*";

impl<T> HostMap<T> {
    /// Adds a pattern (`name`, `*.suffix` or [`CATCH_ALL`]); a later insert of the same pattern
    /// replaces the value.
    pub fn insert(&mut self, pattern: &str, value: T) {
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
    /// catch-all. A wildcard `*.example.com` matches `a.example.com` and `a.b.example.com`,
    /// never `example.com` itself.
    pub fn lookup(&self, name: &str) -> Option<&T> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            let lower = name.to_ascii_lowercase();
            self.lookup_lower(&lower)
        } else {
            self.lookup_lower(name)
        };
        found.or(self.catch_all.as_ref())
    }

    /// The value for a client that sends no server name: the catch-all, if any.
    pub fn without_name(&self) -> Option<&T> {
        self.catch_all.as_ref()
    }

    fn lookup_lower(&self, name: &str) -> Option<&T> {
        if let Ok(i) = self.exact.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            return self.exact.get(i).map(|(_, v)| v);
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
            .map(|(_, v)| v)
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.catch_all.is_none()
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len() + usize::from(self.catch_all.is_some())
    }

    /// All `(pattern, value)` pairs: exact names, then wildcards as `*.suffix`, then the
    /// catch-all as `*`.
    pub fn iter(&self) -> impl Iterator<Item = (String, &T)> {
        self.exact
            .iter()
            .map(|(k, v)| (k.clone(), v))
            .chain(self.wildcard.iter().map(|(s, v)| (format!("*{s}"), v)))
            .chain(self.catch_all.iter().map(|v| (CATCH_ALL.to_string(), v)))
    }
}

/// True when `pattern` (`name` or `*.suffix`) matches `host`, with the same rules as [`HostMap`].
pub fn matches(pattern: &str, host: &str) -> bool {
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
}
