//! The one YAML builder of the tests: a flat `TCPMapping` document on 127.0.0.1, with extra
//! fields appended as given.
#![allow(dead_code)]

use std::fmt::Display;

/// A flat TCPMapping document: `name`, listening on `127.0.0.1:port`, relaying to `service`
/// (`host[:port]`, or a `SocketAddr`). Starts with `---` so documents concatenate.
pub fn mapping(name: &str, port: u16, service: impl Display) -> String {
    mapping_with(name, port, service, "")
}

/// Like [`mapping`] with `extra` YAML lines (each ending in `\n`) after the service.
pub fn mapping_with(name: &str, port: u16, service: impl Display, extra: &str) -> String {
    format!(
        "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: {name}\naddress: 127.0.0.1\nport: {port}\nservice: {service}\n{extra}"
    )
}

/// A TLSContext document named `name` with `fields` (YAML lines, each ending in `\n`, e.g.
/// `"hosts: [my-host]\nsecret: sec\n"`). Starts with `---` so documents concatenate.
pub fn tls_context(name: &str, fields: &str) -> String {
    format!("---\napiVersion: ambassador/v1\nkind: TLSContext\nname: {name}\n{fields}")
}
