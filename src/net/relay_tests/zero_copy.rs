//! The zero-copy setting reaching the relays: `relay_tcp` with zero-copy on and off,
//! `ProxyBuilder::zero_copy` per proxy (two proxies in one process, only one splicing), and
//! the fall-back to copying when no pipe can be made.

use super::*;

#[test]
fn relay_tcp_relays_with_zero_copy_on_and_off() {
    use crate::net::splice::relay_tcp;
    for zero_copy in [true, false] {
        within(async {
            let (client, proxy_client) = tcp_pair();
            let (proxy_upstream, upstream) = tcp_pair();
            let progress = Progress::default();
            let ends = zip(exchange(&client, b"ping"), exchange(&upstream, b"pong"));
            let ((at_client, at_upstream), stats) = zip(
                ends,
                relay_tcp(&proxy_client, &proxy_upstream, None, &progress, zero_copy),
            )
            .await;
            assert_eq!(
                (at_client.as_slice(), at_upstream.as_slice()),
                (&b"pong"[..], &b"ping"[..]),
                "zero_copy={zero_copy}"
            );
            assert_eq!((stats.client_to_upstream, stats.upstream_to_client), (4, 4));
        });
    }
}

/// `ProxyBuilder::zero_copy` is per proxy: two proxies alive in one process, one with
/// zero-copy and one without, each relays 1 MiB each way through an echo upstream; only the
/// first one's relays go through pipes.
#[test]
fn zero_copy_is_a_per_proxy_setting() {
    use std::io::{Read, Write};

    use crate::net::splice::test_hook::spliced;

    const N: usize = 1 << 20;
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in echo.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    let start = |zero_copy: bool| {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let yaml = format!(
            "apiVersion: ambassador/v1\nkind: TCPMapping\nname: zc{port}\n\
             address: 127.0.0.1\nport: {port}\nservice: {echo_addr}\n"
        );
        let proxy = crate::ProxyBuilder::new()
            .config_yaml("zc.yaml", yaml)
            .zero_copy(zero_copy)
            .start_blocking()
            .unwrap();
        let addr = proxy.local_addrs()[0];
        (proxy, addr)
    };
    // In lockstep: each chunk is echoed back whole before the next is sent, so both directions
    // go idle with nothing buffered after every chunk, which is where the 64 KiB warm-up
    // switches to splice (a flood may keep a busy direction from ever idling).
    let through = |addr| {
        const CHUNK: usize = 128 * 1024;
        let data = random_bytes(N);
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = c.try_clone().unwrap();
        let (echoed, next) = std::sync::mpsc::channel::<()>();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            for chunk in sent.chunks(CHUNK) {
                w.write_all(chunk).unwrap();
                next.recv().unwrap();
            }
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = vec![0u8; N];
        for chunk in got.chunks_mut(CHUNK) {
            c.read_exact(chunk).unwrap();
            echoed.send(()).unwrap();
        }
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        writer.join().unwrap();
        assert!(rest.is_empty(), "echo through {addr} sent more");
        assert_eq!(sha(&got), sha(&data), "echo through {addr} differs");
    };
    // Both alive at once: a second builder must not change the first proxy.
    let (on, on_addr) = start(true);
    let (off, off_addr) = start(false);
    through(on_addr);
    through(off_addr);
    assert_eq!(spliced(off_addr), [0, 0], "zero_copy(false) proxy spliced");
    // Under TCPMAP_NO_SPLICE=1 no proxy splices (the one check: splice_disabled_by_env).
    if !crate::net::splice::splice_disabled_by_env() {
        let [up, down] = spliced(on_addr);
        assert!(
            up > 0 && down > 0,
            "zero_copy(true) proxy did not splice: {:?}",
            [up, down]
        );
    }
    rt::block_on(on.shutdown(false)).unwrap();
    rt::block_on(off.shutdown(false)).unwrap();
}

#[test]
fn splice_falls_back_to_copying_when_no_pipe_can_be_made() {
    // The hook is per thread, and this relay is polled on this thread (not spawned).
    crate::net::splice::linux::NO_PIPES.set(true);
    within(async {
        let (client, proxy_client) = tcp_pair();
        let (proxy_upstream, upstream) = tcp_pair();
        let progress = Progress::default();
        let (down, up) = (random_bytes(200_000), random_bytes(100_000));
        let ends = zip(exchange(&client, &down), exchange(&upstream, &up));
        let ((at_client, at_upstream), (stats, spliced)) = zip(
            ends,
            relay_tcp_with(&proxy_client, &proxy_upstream, None, &progress, true),
        )
        .await;
        assert_eq!((sha(&at_client), sha(&at_upstream)), (sha(&up), sha(&down)));
        assert_eq!(
            (stats.client_to_upstream, stats.upstream_to_client),
            (200_000, 100_000)
        );
        assert_eq!(spliced, [0, 0], "no pipe exists, yet bytes were spliced");
    });
    crate::net::splice::linux::NO_PIPES.set(false);
}
