//! Starting a proxy through the public API for a test.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use tcpmap::{ProxyBuilder, ProxyHandle};

/// Runs a future to completion (the proxy's actors run on their own executor threads).
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}

/// Starts a proxy on in-memory YAML with an optional secrets dir.
pub fn start(yaml: &str, secrets: Option<&Path>) -> ProxyHandle {
    start_with(yaml, secrets, |b| b)
}

/// Like [`start`], with extra builder settings.
pub fn start_with(
    yaml: &str,
    secrets: Option<&Path>,
    extra: impl FnOnce(ProxyBuilder) -> ProxyBuilder,
) -> ProxyHandle {
    let mut b = ProxyBuilder::new()
        .config_yaml("test.yaml", yaml)
        .handshake_timeout(Duration::from_secs(3))
        .lookup_timeout(Duration::from_millis(500));
    if let Some(dir) = secrets {
        b = b.secrets_dir(dir);
    }
    let b = extra(b);
    block_on(b.start()).unwrap_or_else(|e| panic!("proxy did not start: {e}"))
}

/// Polls `f` until true or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
