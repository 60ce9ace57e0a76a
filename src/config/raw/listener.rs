//! `kind: Listener` (Emissary 2.x/3.x, `getambassador.io/v3alpha1`) as written: what tcpmap
//! reads of it is whether its `protocolStack` (or the `protocol` shorthand) starts with
//! `PROXY`. Its other fields shape Emissary's HTTP side and are read without warnings.

use serde_yaml_ng::Value;

use super::Loc;
use super::fields::Fields;

/// A `Listener` as written.
#[derive(Debug, Clone)]
pub(crate) struct RawListener {
    /// Where it is.
    pub loc: Loc,
    /// `port`.
    pub port: Option<i64>,
    /// `protocolStack` (upper-cased), or the stack the `protocol` shorthand stands for.
    pub stack: Vec<String>,
}

impl RawListener {
    /// True when the stack starts with `PROXY`: every connection starts with a PROXY
    /// protocol header.
    pub(crate) fn proxy(&self) -> bool {
        self.stack.first().is_some_and(|p| p == "PROXY")
    }
}

/// Listener fields that only shape Emissary's HTTP side.
const HTTP_ONLY: [&str; 6] = [
    "securityModel",
    "hostBinding",
    "statsPrefix",
    "l7Depth",
    "http2MaxConcurrentStreams",
    "protocol",
];

/// The stack a `protocol` shorthand stands for (Emissary's ProtocolType).
fn shorthand(protocol: &str) -> Vec<String> {
    let stack: &[&str] = match protocol.to_ascii_uppercase().as_str() {
        "HTTP" => &["HTTP", "TCP"],
        "HTTPS" => &["TLS", "HTTP", "TCP"],
        "HTTPPROXY" => &["PROXY", "HTTP", "TCP"],
        "HTTPSPROXY" => &["PROXY", "TLS", "HTTP", "TCP"],
        "TCP" => &["TCP"],
        "TLS" => &["TLS", "TCP"],
        "UDP" => &["UDP"],
        _ => &[],
    };
    stack.iter().map(|s| s.to_string()).collect()
}

pub(super) fn listener(f: &mut Fields<'_>, loc: &Loc) -> RawListener {
    let protocol = match f.value("protocol") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    f.known(&HTTP_ONLY);
    let stack = match f.strings("protocolStack") {
        Some(s) => s.iter().map(|p| p.to_ascii_uppercase()).collect(),
        None => protocol.as_deref().map(shorthand).unwrap_or_default(),
    };
    RawListener {
        loc: loc.clone(),
        port: f.integer("port"),
        stack,
    }
}
