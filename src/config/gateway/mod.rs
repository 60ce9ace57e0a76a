//! Gateway API (SPEC section 14): `Gateway`, `TLSRoute`, `TCPRoute`, `ReferenceGrant`,
//! `GatewayClass`, `Namespace` and `Service` documents, read from the same sources as
//! everything else and translated into the same validated mappings as TCPMappings (no second
//! data path).
//!
//! ```text
//! SourceDoc ─ raw.rs ─▶ GatewayResource{Gateway, Route, Grant, Namespace, Service}
//!                         │ (validate/ collects them into translate::Resources)
//!                         ▼
//!            translate.rs ─▶ model::Mapping per (listener, hostname, backend)
//!              listeners.rs: served listeners, their certificates (model::Host each)
//!              backends.rs: weights → shares, refused backends
//!              status.rs: the conditions a controller would write (model::gateway_status)
//! ```
//!
//! Which Gateways are served: those whose `gatewayClassName` is the selected class
//! (`ConfigInput::gateway_class`: `--gateway-class`, else `TCPMAP_GATEWAY_CLASS`, else `tcpmap`).
//! Must not: resolve names, bind sockets, read files (Secrets come from `secrets::Files`).

pub(crate) mod backends;
pub(crate) mod listeners;
pub(crate) mod raw;
pub(crate) mod status;
pub(crate) mod translate;

#[cfg(test)]
mod certs_tests;
#[cfg(test)]
mod status_tests;
#[cfg(test)]
mod tests;

/// The class served when neither `--gateway-class` nor `TCPMAP_GATEWAY_CLASS` names one.
pub(crate) const DEFAULT_CLASS: &str = "tcpmap";

/// A warning on resource `loc` at the line of the `section` list entry whose `name` is
/// `name` (`- name: foo`, or `{name: foo, …}` in flow style), else at the `spec.section` key.
pub(crate) fn warn_at_item(
    loc: &crate::config::raw::Loc,
    section: &str,
    name: &str,
    message: impl Into<String>,
) -> crate::config::ConfigError {
    let doc = &loc.doc;
    let from = doc.key_line(&["spec", section]);
    let wanted = [
        format!("name: {name}"),
        format!("name: \"{name}\""),
        format!("name: '{name}'"),
    ];
    let ends = |rest: &str| rest.is_empty() || rest.starts_with([',', '}', ' ', '#']);
    let line = doc
        .text
        .lines()
        .enumerate()
        .skip(from.saturating_sub(doc.start))
        .find(|(_, l)| {
            wanted.iter().any(|w| {
                l.match_indices(w.as_str()).any(|(i, _)| {
                    ends(&l[i + w.len()..])
                        && (i == 0 || !l[..i].ends_with(|c: char| c.is_alphanumeric()))
                })
            })
        })
        .map_or(from, |(i, _)| doc.start + i);
    crate::config::ConfigError::warning(&doc.file, line, loc.kind, &loc.name, message)
}
