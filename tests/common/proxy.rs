//! Starting a proxy through the public API for a test. Listener ports come from
//! `net::free_port`; [`start_ports`] retries with fresh ports when one was taken meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use tcpmap::{ProxyBuilder, ProxyHandle};

/// The one `eventually` (`common::wait`), also reachable here for tests/fault_injection.rs.
#[allow(unused_imports)]
pub use super::wait::eventually;

/// How often a start is retried with fresh ports after a bind error.
const BIND_ATTEMPTS: usize = 8;

/// Runs a future to completion (the proxy's actors run on their own executor threads).
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}

fn builder(yaml: &str, secrets: Option<&Path>) -> ProxyBuilder {
    let b = ProxyBuilder::new()
        .config_yaml("test.yaml", yaml)
        .handshake_timeout(Duration::from_secs(3))
        .lookup_timeout(Duration::from_millis(500));
    match secrets {
        Some(dir) => b.secrets_dir(dir),
        None => b,
    }
}

/// Starts a proxy on in-memory YAML with an optional secrets dir. The ports in `yaml` are
/// fixed by the caller: prefer [`start_ports`], which retries when a port was taken.
pub fn start(yaml: &str, secrets: Option<&Path>) -> ProxyHandle {
    start_with(yaml, secrets, |b| b)
}

/// Like [`start`], with extra builder settings.
pub fn start_with(
    yaml: &str,
    secrets: Option<&Path>,
    extra: impl FnOnce(ProxyBuilder) -> ProxyBuilder,
) -> ProxyHandle {
    let b = extra(builder(yaml, secrets));
    block_on(b.start()).unwrap_or_else(|e| panic!("proxy did not start: {e}"))
}

/// Starts a proxy on the YAML that `yaml` makes from `N` fresh listener ports; when the start
/// fails with a bind error (another process took a port between the probe and the bind),
/// tries again with `N` new ports. Returns the proxy and the ports it listens on.
pub fn start_ports<const N: usize>(
    secrets: Option<&Path>,
    yaml: impl Fn([u16; N]) -> String,
    extra: impl Fn(ProxyBuilder) -> ProxyBuilder,
) -> (ProxyHandle, [u16; N]) {
    let mut last = None;
    for _ in 0..BIND_ATTEMPTS {
        let ports: [u16; N] = std::array::from_fn(|_| super::net::free_port());
        let b = extra(builder(&yaml(ports), secrets));
        match block_on(b.start()) {
            Ok(p) => return (p, ports),
            Err(e @ tcpmap::Error::Bind { .. }) => {
                eprintln!("proxy start: {e}; retrying with fresh ports");
                last = Some(e);
            }
            Err(e) => panic!("proxy did not start: {e}"),
        }
    }
    panic!("proxy did not start after {BIND_ATTEMPTS} bind errors: {last:?}");
}

/// [`start_ports`] for one listener port and no extra settings.
pub fn start_port(secrets: Option<&Path>, yaml: impl Fn(u16) -> String) -> (ProxyHandle, u16) {
    let (p, [port]) = start_ports(secrets, |[port]| yaml(port), |b| b);
    (p, port)
}
