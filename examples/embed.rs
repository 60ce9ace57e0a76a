//! The smallest embedding of tcpmap: start a proxy from a config file, reload it, shut it down.
//!
//! Run it with `cargo run --example embed` (serves `examples/config/quickstart.yaml`:
//! 127.0.0.1:6000 → 127.0.0.1:6001), or `cargo run --example embed -- PATH` for another
//! config file or directory. An app would keep the handle, call `reload()` on its own signal
//! and `shutdown(true)` when it stops.

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/config/quickstart.yaml"
        )
        .to_string()
    });

    let proxy = tcpmap::ProxyBuilder::new()
        .config_path(&config)
        .drain_timeout(Duration::from_secs(5))
        .start_blocking()?; // every config problem is listed in the error
    println!("serving {config} on {:?}", proxy.local_addrs());

    let report = tcpmap::block_on(proxy.reload())?; // re-reads the file, applies it whole
    println!("reloaded: generation {}", report.applied.generation);

    tcpmap::block_on(proxy.shutdown(true))?; // stop accepting, drain, close
    println!("stopped");
    Ok(())
}
