//! The library as a long-running server: a proxy built with `ProxyBuilder` from a config file,
//! its connections on N data-plane threads (`.workers(n)`), until SIGTERM or SIGINT, then a
//! graceful shutdown. The benchmark runs it as the `tcpmap-lib` target (bench/proxies.py) beside
//! the daemon, so the library's numbers can be read next to `tcpmap run`'s.
//!
//! ```text
//! cargo run --release --example embedded -- CONFIG [--workers N] [--secrets-dir DIR]
//! ```
//!
//! Without `--workers` the builder's default applies (the CPUs the process may use).

use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: embedded CONFIG [--workers N] [--secrets-dir DIR]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Registered first: a signal sent while the proxy starts is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT])?;

    let mut args = std::env::args().skip(1);
    let mut builder = tcpmap::ProxyBuilder::new().drain_timeout(Duration::from_secs(5));
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--workers" => {
                let n = args.next().ok_or(USAGE)?.parse::<usize>()?;
                builder = builder.workers(n);
            }
            "--secrets-dir" => builder = builder.secrets_dir(args.next().ok_or(USAGE)?),
            _ if config.is_none() && !arg.starts_with('-') => config = Some(arg),
            _ => return Err(USAGE.into()),
        }
    }
    let config = config.ok_or(USAGE)?;

    let proxy = builder.config_path(&config).start_blocking()?;
    eprintln!("serving {config} on {:?}", proxy.local_addrs());

    // Blocks until SIGTERM or SIGINT.
    if let Some(signal) = signals.forever().next() {
        eprintln!("signal {signal}: draining");
    }
    tcpmap::block_on(proxy.shutdown(true))?;
    Ok(())
}
