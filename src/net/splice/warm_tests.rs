//! The warm-up path: a short exchange is copied in userspace, a long one switches to splice.

use futures_lite::future::zip;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::super::relay_tests::{tcp_pair, within};
use super::*;

/// Sends `n` bytes each way through a warm-up relay (switch after 64 KiB); returns what arrived
/// and how many bytes went through pipes.
fn exchange(n: usize) -> (usize, usize, [u64; 2]) {
    within(async {
        let (client, proxy_client) = tcp_pair();
        let (proxy_upstream, upstream) = tcp_pair();
        let progress = Progress::default();
        let relay = relay_tcp_mode(
            &proxy_client,
            &proxy_upstream,
            None,
            &progress,
            Mode::Warm(SPLICE_AFTER),
            false,
        );
        let side = |sock: Async<TcpStream>| async move {
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let mut w = &sock;
            let mut r = &sock;
            let (_, got) = zip(
                async {
                    w.write_all(&data).await.unwrap();
                    sock.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
                },
                async {
                    let mut got = Vec::new();
                    r.read_to_end(&mut got).await.unwrap();
                    got
                },
            )
            .await;
            assert_eq!(got, data, "bytes differ");
            got.len()
        };
        let ((a, b), (stats, spliced)) = zip(zip(side(client), side(upstream)), relay).await;
        assert_eq!(stats.client_to_upstream, n as u64);
        assert_eq!(stats.upstream_to_client, n as u64);
        (a, b, spliced)
    })
}

#[test]
fn short_exchange_is_copied_long_one_is_spliced() {
    let (a, b, spliced) = exchange(1000);
    assert_eq!((a, b), (1000, 1000));
    assert_eq!(spliced, [0, 0], "a 1000-byte exchange went through pipes");

    const N: usize = 2 << 20;
    let (a, b, spliced) = exchange(N);
    assert_eq!((a, b), (N, N));
    for moved in spliced {
        assert!(
            moved > 0 && moved <= (N as u64) - SPLICE_AFTER,
            "expected a switch to splice after the warm-up: {spliced:?}"
        );
    }
}
