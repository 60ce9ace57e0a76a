//! deploy/grafana/tcpmap.json is a dashboard that works on what tcpmap exports: it is a valid
//! Grafana dashboard document (ids, grid, data source, variables, queries), and every metric it
//! queries, with every label it selects or groups by, is on the `/metrics` page of a running
//! `tcpmap run` that has served traffic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::daemon::{Daemon, http_get};
use common::metrics::samples;
use common::net;
use common::wait::eventually;
use serde_json::Value;

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/tcpmap.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every `(panel title, expr)` of the dashboard.
fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap().to_string();
            out.push((title, t["expr"].as_str().unwrap().to_string()));
        }
    }
    let vars = d["templating"]["list"].as_array().unwrap();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap().to_string();
        out.push((name, v["query"]["query"].as_str().unwrap().to_string()));
    }
    out
}

/// The identifiers of `expr` that name tcpmap series.
fn metric_names(expr: &str) -> Vec<String> {
    identifiers(expr)
        .into_iter()
        .filter(|(_, w)| w.starts_with("tcpmap_"))
        .map(|(_, w)| w.to_string())
        .collect()
}

/// `(byte offset, word)` of each `[A-Za-z_][A-Za-z0-9_]*` outside double quotes.
fn identifiers(expr: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let (mut i, mut quoted) = (0, false);
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' {
            quoted = !quoted;
            i += 1;
        } else if !quoted && (c.is_ascii_alphabetic() || c == b'_') {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push((start, &expr[start..i]));
        } else {
            i += 1;
        }
    }
    out
}

/// Label names an expression uses: inside `{...}` selectors (`name=~"..."`) and in
/// `by (...)` / `without (...)` clauses and `label_values(..., name)`.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').unwrap() + open;
        for matcher in rest[open + 1..close].split(',') {
            let name = matcher.split(['=', '!']).next().unwrap().trim();
            if !name.is_empty() {
                out.insert(name.to_string());
            }
        }
        rest = &rest[close + 1..];
    }
    for clause in ["by (", "without ("] {
        for part in expr.split(clause).skip(1) {
            let list = part.split(')').next().unwrap();
            out.extend(list.split(',').map(|l| l.trim().to_string()));
        }
    }
    if let Some(args) = expr.strip_prefix("label_values(") {
        let last = args.trim_end_matches(')').rsplit(',').next().unwrap();
        out.insert(last.trim().to_string());
    }
    out
}

#[test]
fn the_dashboard_is_a_valid_grafana_dashboard_document() {
    let d = dashboard();
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let uid = d["uid"].as_str().unwrap();
    assert!(
        uid.len() <= 40
            && uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "uid {uid}"
    );
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(d["time"]["from"].is_string() && d["time"]["to"].is_string());

    // Variables: a Prometheus data source variable, query variables on it.
    let vars = d["templating"]["list"].as_array().unwrap();
    let names: BTreeSet<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), vars.len(), "duplicate variable names");
    let ds = vars.iter().find(|v| v["type"] == "datasource").unwrap();
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());

    let known_types = ["row", "timeseries", "stat", "gauge", "bargauge", "table"];
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(!title.is_empty());
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id at {title}"
        );
        let kind = p["type"].as_str().unwrap();
        assert!(known_types.contains(&kind), "{title}: panel type {kind}");
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap());
        assert!(w >= 1 && h >= 1 && x + w <= 24, "{title}: gridPos {g}");
        // No two panels cover the same grid cell.
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.to_string()) {
                    panic!("{title} overlaps {other} at ({cx}, {cy})");
                }
            }
        }
        if kind == "row" {
            continue;
        }
        assert!(
            p["description"].as_str().is_some_and(|s| !s.is_empty()),
            "{title}"
        );
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}");
        assert_eq!(p["datasource"]["uid"], ds_ref.as_str(), "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no queries");
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "{title}: duplicate refId");
        for t in targets {
            assert_eq!(t["datasource"], p["datasource"], "{title}");
        }
    }

    // Queries: balanced brackets and quotes, only defined variables.
    for (title, expr) in queries(&d) {
        let mut stack = Vec::new();
        let mut quoted = false;
        for c in expr.chars() {
            match c {
                '"' => quoted = !quoted,
                '(' | '{' | '[' if !quoted => stack.push(c),
                ')' | '}' | ']' if !quoted => {
                    let open = stack.pop().unwrap_or_else(|| panic!("{title}: {expr}"));
                    assert_eq!(
                        (open, c).0,
                        match c {
                            ')' => '(',
                            '}' => '{',
                            _ => '[',
                        },
                        "{title}: {expr}"
                    );
                }
                _ => {}
            }
        }
        assert!(stack.is_empty() && !quoted, "{title}: unbalanced {expr}");
        for part in expr.split('$').skip(1) {
            let var: String = part
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let builtin = ["__rate_interval", "__interval", "__range"].contains(&var.as_str());
            assert!(
                builtin || names.contains(var.as_str()),
                "{title}: ${var} undefined"
            );
        }
        assert!(
            !metric_names(&expr).is_empty(),
            "{title}: queries no tcpmap metric"
        );
    }
}

#[test]
fn every_metric_and_label_the_dashboard_queries_is_exported() {
    let d = dashboard();
    // A running proxy that has served one connection, so per-mapping series exist.
    let up = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let (daemon, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| common::yaml::mapping("dash", port, up.addr),
        &["--admin", "127.0.0.1:0"],
    );
    let admin = daemon.admin_addr();
    let mut s = net::connect(net::local(port));
    net::roundtrip(&mut s, b"hello dashboard");
    drop(s);
    let text = || http_get(admin, "/metrics").1;
    assert!(
        eventually(Duration::from_secs(5), || {
            common::metrics::metric(
                &text(),
                "tcpmap_connections_ended_total",
                &[("mapping", "dash"), ("reason", "client_closed")],
            ) >= 1.0
        }),
        "{}",
        text()
    );
    let page = text();

    // What is exported: names from the TYPE lines (histograms also as _bucket/_count/_sum),
    // and the labels seen on each name's samples.
    let mut exported: BTreeSet<String> = BTreeSet::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (name, kind) = (it.next().unwrap(), it.next().unwrap());
        exported.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_count", "_sum"] {
                exported.insert(format!("{name}{suffix}"));
            }
        }
    }
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for sample in samples(&page) {
        let set = labels.entry(sample.name.to_string()).or_default();
        for pair in sample.labels.split(',').filter(|p| !p.is_empty()) {
            set.insert(pair.split('=').next().unwrap().to_string());
        }
    }

    let mut queried = BTreeSet::new();
    for (title, expr) in queries(&d) {
        let names = metric_names(&expr);
        let used = label_names(&expr);
        for name in &names {
            assert!(exported.contains(name), "{title}: {name} is not exported");
            queried.insert(name.clone());
        }
        // Every label used is on the samples of some metric the query names (`le` only on
        // buckets). Families without samples yet (no failure happened) cannot be checked.
        let seen: BTreeSet<&String> = names
            .iter()
            .filter_map(|n| labels.get(n))
            .flatten()
            .collect();
        if names
            .iter()
            .all(|n| labels.get(n).is_some_and(|l| !l.is_empty()))
        {
            for label in &used {
                assert!(
                    seen.contains(label),
                    "{title}: no exported {names:?} has label `{label}`"
                );
            }
        }
    }
    // The dashboard covers what the issue asks for.
    for needed in [
        "tcpmap_connections_active",
        "tcpmap_connections_accepted_total",
        "tcpmap_connections_ended_total",
        "tcpmap_bytes_total",
        "tcpmap_tls_handshake_failures_total",
        "tcpmap_upstream_connect_duration_seconds_bucket",
        "tcpmap_config_reloads_total",
    ] {
        assert!(
            queried.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}
