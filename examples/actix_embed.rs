//! Runs tcpmap inside an actix `System` through the `actix` feature's `ProxyActor`: start a
//! proxy, relay one connection, ask for the routes, apply a new config, read the metrics and
//! shut down, all by actix messages.
//!
//! Run it with `cargo run --example actix_embed --features actix`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use tcpmap::actix::{Apply, GetMetrics, ProxyActor, Routes, Shutdown};

fn mapping(name: &str, port: u16, upstream: u16) -> String {
    format!(
        "apiVersion: ambassador/v1\nkind: TCPMapping\nname: {name}\n\
         address: 127.0.0.1\nport: {port}\nservice: 127.0.0.1:{upstream}\n"
    )
}

/// An upstream that writes `hello from tcpmap's upstream` to each client.
fn upstream() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(b"hello from tcpmap's upstream\n");
        }
    });
    Ok(port)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = upstream()?;
    let (first, second) = (free_port()?, free_port()?);
    let builder =
        tcpmap::ProxyBuilder::new().config_yaml("first.yaml", mapping("first", first, upstream));
    let proxy = ProxyActor::launch(builder).await?;

    // A blocking client on a plain thread (the actix thread must not block).
    let reply = actix_rt::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", first))?;
        let mut line = String::new();
        s.read_to_string(&mut line)?;
        Ok(line)
    })
    .await??;
    print!("via 127.0.0.1:{first}: {reply}");

    let routes = proxy.send(Routes).await??;
    println!("routes: {:?}", routes.listeners());

    let report = proxy
        .send(Apply(mapping("second", second, upstream)))
        .await??;
    println!(
        "applied generation {}: started {:?}, stopped {:?}",
        report.applied.generation, report.applied.started, report.applied.stopped
    );

    let metrics = proxy.send(GetMetrics).await?;
    println!(
        "metrics: generation {}, reloads ok {}",
        metrics.generation, metrics.reloads_ok
    );

    proxy.send(Shutdown { graceful: true }).await??;
    println!("shut down");
    Ok(())
}
