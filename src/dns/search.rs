//! Search-list expansion: which absolute names to ask for, in which order.
//!
//! The resolv.conf(5) rules, which async-dns had backwards:
//! - a name ending in a dot is absolute: only that name is asked;
//! - a name with at least `ndots` dots is asked as-is first, then with each search domain;
//! - a shorter name is asked with each search domain first, then as-is.
//!
//! The caller moves to the next candidate on NXDOMAIN or "no data", and stops at the first
//! answer with addresses or at a hard failure (timeout).

/// The candidate names for `name`, absolute and without a trailing dot, without duplicates.
pub(crate) fn candidates(name: &str, search: &[String], ndots: u8) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![absolute.to_owned()];
    }
    let dots = name.bytes().filter(|b| *b == b'.').count();
    let searched = search
        .iter()
        .map(|domain| domain.trim_end_matches('.'))
        .filter(|domain| !domain.is_empty())
        .map(|domain| format!("{name}.{domain}"));
    let mut out: Vec<String> = Vec::with_capacity(search.len() + 1);
    let push = |out: &mut Vec<String>, candidate: String| {
        if !out.iter().any(|c| c.eq_ignore_ascii_case(&candidate)) {
            out.push(candidate);
        }
    };
    if dots >= usize::from(ndots) {
        push(&mut out, name.to_owned());
        searched.for_each(|c| push(&mut out, c));
    } else {
        searched.for_each(|c| push(&mut out, c));
        push(&mut out, name.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search() -> Vec<String> {
        vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()]
    }

    #[test]
    fn ndots_1_asks_dotted_names_as_is_first() {
        assert_eq!(
            candidates("api.example", &search(), 1),
            vec![
                "api.example",
                "api.example.ns.svc.cluster.local",
                "api.example.svc.cluster.local"
            ]
        );
        assert_eq!(
            candidates("api", &search(), 1),
            vec!["api.ns.svc.cluster.local", "api.svc.cluster.local", "api"]
        );
    }

    #[test]
    fn ndots_5_searches_first_like_kubernetes() {
        assert_eq!(
            candidates("db.other", &search(), 5),
            vec![
                "db.other.ns.svc.cluster.local",
                "db.other.svc.cluster.local",
                "db.other"
            ]
        );
        assert_eq!(candidates("a.b.c.d.e.f", &search(), 5)[0], "a.b.c.d.e.f");
    }

    #[test]
    fn a_trailing_dot_means_absolute_only() {
        assert_eq!(
            candidates("api.example.", &search(), 5),
            vec!["api.example"]
        );
        assert_eq!(candidates("api.", &search(), 1), vec!["api"]);
    }

    #[test]
    fn no_search_list_means_the_name_alone() {
        assert_eq!(candidates("api", &[], 1), vec!["api"]);
        assert_eq!(
            candidates("api", &["".into(), "x.".into(), "X".into()], 1),
            vec!["api.x", "api"]
        );
    }
}
