//! The actix adapter as an actix app uses it: a `ProxyActor` in an actix `System`, driven only
//! by messages, checked by real connections through the proxy.
#![cfg(feature = "actix")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

mod common;

use common::net::free_port;
use tcpmap::actix::{Apply, GetMetrics, ProxyActor, Reload, Routes, Shutdown};

/// Writes `tag` to every client, then closes.
fn tagger(tag: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(tag.as_bytes());
        }
    });
    port
}

/// What a client reads through `port` (on a blocking thread, off the actix thread).
async fn fetch(port: u16) -> std::io::Result<String> {
    actix_rt::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .await
    .unwrap()
}

#[actix_rt::test]
async fn actor_relays_applies_reports_and_shuts_down() {
    let (blue, green) = (tagger("blue"), tagger("green"));
    let (p1, p2) = (free_port(), free_port());
    let builder = tcpmap::ProxyBuilder::new().config_yaml(
        "t.yaml",
        common::yaml::mapping("blue", p1, format!("127.0.0.1:{blue}")),
    );
    let proxy = ProxyActor::launch(builder).await.unwrap();

    assert_eq!(fetch(p1).await.unwrap(), "blue");
    let routes = proxy.send(Routes).await.unwrap().unwrap();
    assert_eq!(
        routes
            .listeners()
            .iter()
            .map(|a| a.port())
            .collect::<Vec<_>>(),
        [p1]
    );

    // An invalid config is refused whole and the old route keeps serving.
    let err = proxy
        .send(Apply("kind: TCPMapping\nname: broken\n".into()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, tcpmap::Error::Config(_)), "{err}");
    assert_eq!(fetch(p1).await.unwrap(), "blue");

    // A valid one moves the listener: new port to the new upstream, old port refuses.
    let report = proxy
        .send(Apply(common::yaml::mapping(
            "green",
            p2,
            format!("127.0.0.1:{green}"),
        )))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.applied.started.len(), 1);
    assert_eq!(fetch(p2).await.unwrap(), "green");
    assert!(fetch(p1).await.is_err());

    // Reload re-reads the applied YAML: same routes, next generation.
    let again = proxy.send(Reload).await.unwrap().unwrap();
    assert_eq!(again.applied.generation, report.applied.generation + 1);

    let metrics = proxy.send(GetMetrics).await.unwrap();
    assert_eq!(metrics.generation, again.applied.generation);
    assert_eq!(metrics.reloads_error, 1);
    let accepted: u64 = metrics.mappings.iter().map(|m| m.accepted).sum();
    assert!(accepted >= 2, "{metrics:?}");

    proxy
        .send(Shutdown { graceful: true })
        .await
        .unwrap()
        .unwrap();
    assert!(fetch(p2).await.is_err(), "port still open after Shutdown");
    // The actor stopped with the proxy.
    assert!(proxy.send(GetMetrics).await.is_err());
}

#[actix_rt::test]
async fn launch_reports_a_bad_config() {
    let builder = tcpmap::ProxyBuilder::new().config_yaml("bad.yaml", "kind: TCPMapping\n");
    let err = ProxyActor::launch(builder).await.unwrap_err();
    assert!(err.to_string().contains("bad.yaml:"), "{err}");
}
