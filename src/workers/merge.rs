//! `/metrics` over all workers (pure: texts in, text out).
//!
//! Every process renders the same registry as OpenMetrics text; the totals are the sums of
//! each series (same name and labels) over the Supervisor, the live workers and the
//! *retired* counts — the last values seen of workers that died, so counters and histograms
//! never go backwards when a worker is replaced. Two gauges every process sets to the same
//! value (the config generation, the listeners bound) are the Supervisor's own, not sums.
//!
//! Must not: ask anyone for anything (the pool gathers the texts).

use std::collections::BTreeMap;

/// Families whose value is the Supervisor's (every worker holds the same one).
const OWNED: [&str; 2] = ["tcpmap_config_generation", "tcpmap_listeners"];

/// Gauges each worker holds its own view of the same thing (its endpoints' health): the
/// largest of the workers' values, not their sum.
const AGREED: [&str; 1] = ["tcpmap_upstream_endpoints"];

/// Counter and histogram samples of workers that are gone, by sample key (`name{labels}`).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Retired {
    samples: BTreeMap<String, Number>,
}

impl Retired {
    /// Keeps the counter and histogram samples of a dead worker's last `text`.
    pub(crate) fn add(&mut self, text: &str) {
        for family in parse(text) {
            if family.kind == "counter" || family.kind == "histogram" {
                for (key, value) in family.samples {
                    let slot = self.samples.entry(key).or_insert(Number::Int(0));
                    *slot = slot.add(value);
                }
            }
        }
    }
}

/// A sample value: integers stay exact; anything else adds as `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    fn parse(s: &str) -> Option<Number> {
        if let Ok(i) = s.parse::<i128>() {
            return Some(Number::Int(i));
        }
        s.parse::<f64>().ok().map(Number::Float)
    }

    fn add(self, other: Number) -> Number {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Number::Int(a.saturating_add(b)),
            (a, b) => Number::Float(a.as_f64() + b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    fn render(self) -> String {
        match self {
            Number::Int(i) => i.to_string(),
            // Keep a decimal point so a float family stays a float to parsers.
            Number::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => {
                format!("{f:.1}")
            }
            Number::Float(f) => f.to_string(),
        }
    }
}

/// One metric family of a text: its header lines and its samples in order.
#[derive(Debug, Default)]
struct Family {
    name: String,
    kind: String,
    header: Vec<String>,
    samples: Vec<(String, Number)>,
}

/// The families of an OpenMetrics text, in order. Lines that are not understood are skipped
/// (the texts come from our own processes; a bad line must not break the page).
fn parse(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    for line in text.lines() {
        if line == "# EOF" || line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(what), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            if families.last().is_none_or(|f| f.name != name) {
                families.push(Family {
                    name: name.to_string(),
                    ..Family::default()
                });
            }
            if let Some(f) = families.last_mut() {
                if what == "TYPE" {
                    f.kind = parts.next().unwrap_or_default().to_string();
                }
                f.header.push(line.to_string());
            }
            continue;
        }
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (Some(f), Some(value)) = (families.last_mut(), Number::parse(value)) else {
            continue;
        };
        f.samples.push((key.to_string(), value));
    }
    families
}

/// One family's totals while merging.
struct Total {
    name: String,
    header: Vec<String>,
    owned: bool,
    agreed: bool,
    keys: Vec<String>,
    values: BTreeMap<String, Number>,
}

impl Total {
    fn add(&mut self, key: &str, value: Number, replace: bool) {
        if !self.values.contains_key(key) {
            self.keys.push(key.to_string());
        }
        let slot = self.values.entry(key.to_string()).or_insert(Number::Int(0));
        *slot = if replace { value } else { slot.add(value) };
    }

    /// True when sample `key` belongs to this family (its name plus a suffix such as
    /// `_total`, `_bucket`, `_sum`, `_count`).
    fn holds(&self, key: &str) -> bool {
        let metric = key.split('{').next().unwrap_or(key);
        metric
            .strip_prefix(self.name.as_str())
            .is_some_and(|suffix| {
                ["", "_total", "_bucket", "_sum", "_count", "_created"].contains(&suffix)
            })
    }
}

/// The totals page: `own` is the Supervisor's text, `workers` the live workers' texts;
/// `extra` lines (the pool's own families) go before `# EOF`.
pub(crate) fn merge(own: &str, workers: &[String], retired: &Retired, extra: &str) -> String {
    let mut totals: Vec<Total> = Vec::new();
    let sources = std::iter::once((true, own)).chain(workers.iter().map(|w| (false, w.as_str())));
    for (is_own, text) in sources {
        for family in parse(text) {
            let at = match totals.iter().position(|t| t.name == family.name) {
                Some(at) => at,
                None => {
                    totals.push(Total {
                        owned: OWNED.contains(&family.name.as_str()),
                        agreed: AGREED.contains(&family.name.as_str()),
                        name: family.name,
                        header: family.header,
                        keys: Vec::new(),
                        values: BTreeMap::new(),
                    });
                    totals.len() - 1
                }
            };
            let Some(total) = totals.get_mut(at) else {
                continue;
            };
            for (key, value) in family.samples {
                match (total.owned, is_own) {
                    (true, false) if total.values.contains_key(&key) => {}
                    (true, false) => total.add(&key, Number::Int(0), true),
                    (false, _) if total.agreed => {
                        let larger = total
                            .values
                            .get(&key)
                            .is_none_or(|v| v.as_f64() < value.as_f64());
                        if larger {
                            total.add(&key, value, true);
                        }
                    }
                    (owned, _) => total.add(&key, value, owned),
                }
            }
        }
    }
    for (key, value) in &retired.samples {
        if let Some(total) = totals.iter_mut().find(|t| !t.owned && t.holds(key)) {
            total.add(key, *value, false);
        }
    }
    let mut out = String::new();
    for total in &totals {
        for h in &total.header {
            out.push_str(h);
            out.push('\n');
        }
        for key in &total.keys {
            if let Some(v) = total.values.get(key) {
                out.push_str(&format!("{key} {}\n", v.render()));
            }
        }
    }
    out.push_str(extra);
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const A: &str = "# HELP tcpmap_connections_accepted Connections accepted.\n\
# TYPE tcpmap_connections_accepted counter\n\
tcpmap_connections_accepted_total{mapping=\"m\",port=\"1\"} 3\n\
# HELP tcpmap_connections_active Connections open now.\n\
# TYPE tcpmap_connections_active gauge\n\
tcpmap_connections_active{mapping=\"m\",port=\"1\"} 1\n\
# HELP tcpmap_config_generation The active config generation.\n\
# TYPE tcpmap_config_generation gauge\n\
tcpmap_config_generation 1\n\
# HELP tcpmap_upstream_connect_duration_seconds Time.\n\
# TYPE tcpmap_upstream_connect_duration_seconds histogram\n\
tcpmap_upstream_connect_duration_seconds_sum{mapping=\"m\"} 0.25\n\
tcpmap_upstream_connect_duration_seconds_count{mapping=\"m\"} 3\n\
# EOF\n";

    const OWN: &str = "# HELP tcpmap_connections_accepted Connections accepted.\n\
# TYPE tcpmap_connections_accepted counter\n\
# HELP tcpmap_config_generation The active config generation.\n\
# TYPE tcpmap_config_generation gauge\n\
tcpmap_config_generation 4\n\
# EOF\n";

    fn value(text: &str, key: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
            .map(str::to_string)
    }

    #[test]
    fn series_sum_over_workers_and_the_generation_is_the_supervisors() {
        let b = A.replace("} 3", "} 4").replace("} 0.25", "} 0.5");
        let text = merge(OWN, &[A.to_string(), b], &Retired::default(), "");
        let accepted = "tcpmap_connections_accepted_total{mapping=\"m\",port=\"1\"}";
        assert_eq!(value(&text, accepted).as_deref(), Some("7"), "{text}");
        let active = "tcpmap_connections_active{mapping=\"m\",port=\"1\"}";
        assert_eq!(value(&text, active).as_deref(), Some("2"));
        assert_eq!(
            value(&text, "tcpmap_config_generation").as_deref(),
            Some("4")
        );
        let sum = "tcpmap_upstream_connect_duration_seconds_sum{mapping=\"m\"}";
        assert_eq!(value(&text, sum).as_deref(), Some("0.75"));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            text.matches("# TYPE tcpmap_connections_accepted counter")
                .count(),
            1
        );
    }

    #[test]
    fn a_dead_workers_counters_stay_and_its_gauges_go() {
        let mut retired = Retired::default();
        retired.add(A);
        let text = merge(OWN, &[A.to_string()], &retired, "tcpmap_workers 2\n");
        let accepted = "tcpmap_connections_accepted_total{mapping=\"m\",port=\"1\"}";
        assert_eq!(value(&text, accepted).as_deref(), Some("6"));
        let active = "tcpmap_connections_active{mapping=\"m\",port=\"1\"}";
        assert_eq!(value(&text, active).as_deref(), Some("1"));
        let count = "tcpmap_upstream_connect_duration_seconds_count{mapping=\"m\"}";
        assert_eq!(value(&text, count).as_deref(), Some("6"));
        assert!(text.contains("tcpmap_workers 2\n# EOF\n"));
        // With no worker alive, the retired counts still show.
        let text = merge(OWN, &[], &retired, "");
        assert_eq!(value(&text, accepted).as_deref(), Some("3"), "{text}");
    }

    #[test]
    fn each_workers_view_of_the_endpoints_is_not_added_up() {
        let w = "# TYPE tcpmap_upstream_endpoints gauge\n\
tcpmap_upstream_endpoints{mapping=\"m\",state=\"healthy\"} 3\n# EOF\n";
        let text = merge(
            OWN,
            &[w.to_string(), w.replace("} 3", "} 2")],
            &Retired::default(),
            "",
        );
        let key = "tcpmap_upstream_endpoints{mapping=\"m\",state=\"healthy\"}";
        assert_eq!(value(&text, key).as_deref(), Some("3"), "{text}");
    }

    proptest! {
        #[test]
        fn any_text_merges_without_panicking(a in ".{0,80}", b in "[#a-z_{}=\" 0-9.\n]{0,120}") {
            let mut retired = Retired::default();
            retired.add(&b);
            let _ = merge(&a, &[b.clone(), a.clone()], &retired, "");
        }
    }
}
