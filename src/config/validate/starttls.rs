//! `starttls` (ext): the protocol whose TLS negotiation a listener speaks before the
//! ClientHello. A listener-wide setting written on mappings: the mappings of one listener
//! `(address, port)` that write it must agree (unset: no opinion; `none`: explicitly none),
//! and each one that differs from the first gets an error naming both.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::ConfigError;
use crate::config::model::Mapping;
use crate::config::raw::{Loc, RawMapping};
use crate::route::StartTls;

/// `starttls` as written, parsed: `Some(None)` for an explicit `none`.
fn parse(raw: &RawMapping) -> Result<Option<Option<StartTls>>, ConfigError> {
    let Some(word) = raw.starttls.as_deref() else {
        return Ok(None);
    };
    match word.trim().to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => Ok(Some(Some(StartTls::Postgres))),
        "none" => Ok(Some(None)),
        _ => Err(raw.loc.err(
            &["starttls"],
            format!("`starttls` must be postgres or none, not `{word}`"),
        )),
    }
}

fn word(s: Option<StartTls>) -> &'static str {
    s.map_or("none", StartTls::as_str)
}

fn same(a: &Loc, b: &Loc) -> bool {
    Arc::ptr_eq(&a.doc, &b.doc) && a.kind == b.kind && a.name == b.name
}

/// The listeners that speak a protocol's TLS negotiation first, from what the valid
/// `mappings` wrote in `raw` (a mapping that failed validation has no say), with the errors:
/// a word that is not `postgres` or `none`, and mappings of one listener that disagree.
pub(crate) fn listeners(
    raw: &[RawMapping],
    mappings: &[Mapping],
) -> (BTreeMap<SocketAddr, StartTls>, Vec<ConfigError>) {
    let mut errs = Vec::new();
    // The first mapping of each listener that wrote a value, with the value.
    let mut first: BTreeMap<SocketAddr, (Option<StartTls>, &Mapping)> = BTreeMap::new();
    for r in raw {
        let written = match parse(r) {
            Ok(Some(w)) => w,
            Ok(None) => continue,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        let Some(m) = mappings.iter().find(|m| same(&m.loc, &r.loc)) else {
            continue;
        };
        let addr = SocketAddr::new(m.address, m.port);
        match first.get(&addr) {
            Some((theirs, other)) if *theirs != written => errs.push(m.loc.err(
                &["starttls"],
                format!(
                    "`starttls` is {} here but {} in TCPMapping {} ({}); mappings on listener {addr} must agree",
                    word(written),
                    word(*theirs),
                    other.loc.name,
                    other.loc.place()
                ),
            )),
            Some(_) => {}
            None => {
                first.insert(addr, (written, m));
            }
        }
    }
    let decided = first
        .into_iter()
        .filter_map(|(addr, (s, _))| Some((addr, s?)))
        .collect();
    (decided, errs)
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigInput, load};

    fn input(yaml: &str) -> ConfigInput {
        ConfigInput {
            inline: vec![("t.yaml".into(), yaml.into())],
            ..ConfigInput::default()
        }
    }

    fn errors(yaml: &str) -> Vec<String> {
        match load(&input(yaml)) {
            Ok(_) => Vec::new(),
            Err(errs) => errs
                .iter()
                .filter(|e| e.is_error())
                .map(ToString::to_string)
                .collect(),
        }
    }

    fn mapping(name: &str, port: u16, extra: &str) -> String {
        format!(
            "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: {name}\nport: {port}\nservice: 127.0.0.1:5432\n{extra}"
        )
    }

    #[test]
    fn mappings_of_one_listener_must_agree_and_unset_has_no_opinion() {
        let yaml = [
            mapping("a", 5432, "starttls: postgres\n"),
            mapping("b", 5432, "host: db.test\ntls_passthrough: true\n"),
            mapping(
                "c",
                5432,
                "host: other.test\ntls_passthrough: true\nstarttls: none\n",
            ),
            mapping("d", 6432, "starttls: none\n"),
        ]
        .concat();
        let errs = errors(&yaml);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("TCPMapping c: `starttls` is none here but postgres in TCPMapping a")
                && errs[0].contains("mappings on listener 0.0.0.0:5432 must agree"),
            "{errs:?}"
        );
    }

    #[test]
    fn the_listener_speaks_postgres_when_one_mapping_says_so() {
        let yaml = [
            mapping("a", 5432, ""),
            mapping(
                "b",
                5432,
                "host: db.test\ntls_passthrough: true\nstarttls: Postgres\n",
            ),
            mapping("c", 6432, "starttls: none\n"),
        ]
        .concat();
        let loaded = load(&input(&yaml)).unwrap();
        let pg: std::net::SocketAddr = "0.0.0.0:5432".parse().unwrap();
        let other: std::net::SocketAddr = "0.0.0.0:6432".parse().unwrap();
        assert_eq!(
            loaded.table.starttls(&pg),
            Some(crate::route::StartTls::Postgres)
        );
        assert_eq!(loaded.table.starttls(&other), None);
        let text = loaded.table.render_text();
        assert!(
            text.contains("0.0.0.0:5432 starttls=postgres db.test passthrough"),
            "{text}"
        );
        assert!(text.contains("0.0.0.0:6432 * "), "{text}");
        let json = loaded.table.to_json();
        assert_eq!(json["listeners"][0]["starttls"], "postgres");
    }

    #[test]
    fn an_unknown_word_is_an_error() {
        let errs = errors(&mapping("a", 5432, "starttls: mysql\n"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("`starttls` must be postgres or none, not `mysql`"),
            "{errs:?}"
        );
    }
}
