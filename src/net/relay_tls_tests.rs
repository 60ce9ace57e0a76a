//! The generic relay with TLS on the client side: the proxy terminates TLS (futures-rustls over a
//! loopback socket, self-signed rcgen certificate) and relays plaintext to a plain upstream.
//! Checks bytes arrive intact both ways and that half-closes cross the TLS boundary: the client's
//! close_notify becomes the upstream's EOF, and the upstream's EOF becomes a close_notify the
//! client reads as a clean end of stream (rustls reports a missing one as an error).

use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::zip;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};

use std::net::TcpStream;

use super::copy::{Progress, RelayEnd, RelayStats, TcpHalfClose, relay};
use super::prefixed::Prefixed;
use super::relay_tests::{tcp_pair, within};
use crate::rt::{self, Async};
use crate::testkit::pki;

/// A server config with a self-signed `localhost` certificate and a client that trusts it.
fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let (cert, key) = pki::self_signed(&["localhost"]);
    (
        pki::server_config(&cert, &key, None),
        pki::client_config(&cert, None),
    )
}

/// A proxy in the middle as connections use it: TLS terminated over `Prefixed` (the
/// ClientHello replay and read-ahead layer), relayed in plaintext to the upstream. Returns
/// the client's raw socket, the upstream's end and the running relay.
fn terminating_relay(
    server_cfg: Arc<rustls::ServerConfig>,
) -> (Async<TcpStream>, Async<TcpStream>, rt::Task<RelayStats>) {
    let (client_sock, proxy_client) = tcp_pair();
    let (proxy_upstream, upstream) = tcp_pair();
    let relay_task = rt::spawn(async move {
        let mut tls = TlsAcceptor::from(server_cfg)
            .accept(Prefixed::new(Vec::new(), TcpHalfClose(proxy_client)))
            .await
            .unwrap();
        let mut plain = TcpHalfClose(&proxy_upstream);
        let progress = Progress::default();
        relay(
            &mut tls,
            &mut plain,
            Some(Duration::from_secs(10)),
            &progress,
        )
        .await
    });
    (client_sock, upstream, relay_task)
}

fn random_bytes(n: usize) -> Vec<u8> {
    std::iter::repeat_with(|| fastrand::u8(..))
        .take(n)
        .collect()
}

#[test]
fn tls_client_side_bytes_and_close_notify_cross_the_relay() {
    within(async {
        let (server_cfg, client_cfg) = tls_configs();
        let (client_sock, upstream, relay_task) = terminating_relay(server_cfg);

        let request = random_bytes(256 * 1024);
        let reply = random_bytes(128 * 1024);
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls_client = TlsConnector::from(client_cfg)
            .connect(name, client_sock)
            .await
            .unwrap();

        let client = async {
            tls_client.write_all(&request).await.unwrap();
            // close_notify: the upstream must see EOF.
            tls_client.close().await.unwrap();
            let mut got = Vec::new();
            // A clean Ok end here means the relay sent close_notify when the upstream shut down.
            tls_client
                .read_to_end(&mut got)
                .await
                .expect("TLS stream did not end with close_notify");
            got
        };
        let upstream_side = async {
            let mut got = Vec::new();
            (&upstream).read_to_end(&mut got).await.unwrap();
            (&upstream).write_all(&reply).await.unwrap();
            upstream.get_ref().shutdown(Shutdown::Write).unwrap();
            got
        };
        let (at_client, at_upstream) = zip(client, upstream_side).await;
        assert_eq!(Sha256::digest(&at_upstream), Sha256::digest(&request));
        assert_eq!(Sha256::digest(&at_client), Sha256::digest(&reply));

        let stats = rt::timeout(Duration::from_secs(2), relay_task)
            .await
            .expect("relay did not end");
        assert_eq!(stats.end, RelayEnd::ClientClosed);
        assert_eq!(stats.client_to_upstream, request.len() as u64);
        assert_eq!(stats.upstream_to_client, reply.len() as u64);
    });
}

#[test]
fn bytes_before_a_bare_fin_still_arrive_before_the_error() {
    // The TLS peer's last records and its FIN (no close_notify) land together: the relay
    // reads the records and then the FIN's error in one fill; the bytes must go out first.
    within(async {
        let (server_cfg, client_cfg) = tls_configs();
        let (client_sock, upstream, relay_task) = terminating_relay(server_cfg);
        let request = random_bytes(100 * 1024);
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls_client = TlsConnector::from(client_cfg)
            .connect(name, client_sock)
            .await
            .unwrap();
        tls_client.write_all(&request).await.unwrap();
        tls_client.flush().await.unwrap();
        // A bare FIN right behind the data: no close_notify.
        tls_client
            .get_ref()
            .0
            .get_ref()
            .shutdown(Shutdown::Write)
            .unwrap();
        let mut got = Vec::new();
        let _ = (&upstream).read_to_end(&mut got).await;
        assert_eq!(got.len(), request.len());
        assert_eq!(Sha256::digest(&got), Sha256::digest(&request));
        let stats = rt::timeout(Duration::from_secs(2), relay_task)
            .await
            .expect("relay did not end");
        assert_eq!(stats.client_to_upstream, request.len() as u64);
        drop(tls_client);
    });
}
