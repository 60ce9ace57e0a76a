//! Relay tests on real loopback sockets, each run through every path: the generic `relay` over
//! plain sockets, `relay_tcp` buffered, and `relay_tcp` with splice(2), and the loopback rig
//! they share. The zero-copy setting reaching the relays is tested in `zero_copy.rs`.

mod zero_copy;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rt::Async;
use futures_lite::future::zip;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use sha2::{Digest, Sha256};

use super::copy::{Progress, RelayEnd, RelayStats, TcpHalfClose, relay, relay_to_plain_upstream};
use super::splice::relay_tcp_with;
use crate::rt;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    Generic,
    /// `relay_to_plain_upstream` (a TLS client's relay; here the client is plain): the
    /// upstream socket is closed when the relay returns, as the connection does.
    PlainUpstream,
    Buffered,
    Splice,
}

const PATHS: [Path; 4] = [
    Path::Generic,
    Path::PlainUpstream,
    Path::Buffered,
    Path::Splice,
];

/// A connected loopback pair.
pub(super) fn tcp_pair() -> (Async<TcpStream>, Async<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();
    (Async::new(a).unwrap(), Async::new(b).unwrap())
}

/// The far ends a test drives, and the running relay in between.
struct Rig {
    client: Async<TcpStream>,
    upstream: Async<TcpStream>,
    progress: Arc<Progress>,
    relay: rt::Task<(RelayStats, [u64; 2])>,
}

fn rig(path: Path, idle: Option<Duration>) -> Rig {
    let (client, proxy_client) = tcp_pair();
    let (proxy_upstream, upstream) = tcp_pair();
    let progress = Arc::new(Progress::default());
    let relay = start_relay(path, proxy_client, proxy_upstream, idle, progress.clone());
    Rig {
        client,
        upstream,
        progress,
        relay,
    }
}

/// Relays between the proxy's two sockets on `path`.
fn start_relay(
    path: Path,
    proxy_client: Async<TcpStream>,
    proxy_upstream: Async<TcpStream>,
    idle: Option<Duration>,
    live: Arc<Progress>,
) -> rt::Task<(RelayStats, [u64; 2])> {
    rt::spawn(async move {
        match path {
            Path::Generic => {
                let mut c = TcpHalfClose(&proxy_client);
                let mut u = TcpHalfClose(&proxy_upstream);
                (relay(&mut c, &mut u, idle, &live).await, [0, 0])
            }
            Path::PlainUpstream => {
                let mut c = TcpHalfClose(&proxy_client);
                let stats = relay_to_plain_upstream(&mut c, &proxy_upstream, idle, &live).await;
                (stats, [0, 0])
            }
            Path::Buffered => {
                relay_tcp_with(&proxy_client, &proxy_upstream, idle, &live, false).await
            }
            Path::Splice => relay_tcp_with(&proxy_client, &proxy_upstream, idle, &live, true).await,
        }
    })
}

/// Runs a test body on the runtime; a hang fails the test instead of stalling the suite.
pub(super) fn within<F: std::future::Future>(body: F) -> F::Output {
    rt::block_on(async {
        rt::timeout(Duration::from_secs(20), body)
            .await
            .expect("test hung")
    })
}

fn random_bytes(n: usize) -> Vec<u8> {
    std::iter::repeat_with(|| fastrand::u8(..))
        .take(n)
        .collect()
}

fn sha(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// Sends `data`, shuts the write half, and reads everything until EOF (concurrently).
async fn exchange(sock: &Async<TcpStream>, data: &[u8]) -> Vec<u8> {
    let send = async {
        let mut w = sock;
        w.write_all(data).await.unwrap();
        sock.get_ref().shutdown(Shutdown::Write).unwrap();
    };
    let recv = async {
        let mut r = sock;
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    };
    zip(send, recv).await.1
}

async fn read_to_end(sock: &Async<TcpStream>) -> Vec<u8> {
    let mut got = Vec::new();
    let mut r = sock;
    r.read_to_end(&mut got).await.unwrap();
    got
}

async fn send_and_shut(sock: &Async<TcpStream>, data: &[u8]) {
    let mut w = sock;
    w.write_all(data).await.unwrap();
    sock.get_ref().shutdown(Shutdown::Write).unwrap();
}

#[test]
fn one_mib_each_way_arrives_intact() {
    const N: usize = 1 << 20;
    for path in PATHS {
        within(async {
            let rig = rig(path, Some(Duration::from_secs(10)));
            let (up_data, down_data) = (random_bytes(N), random_bytes(N));
            let (at_client, at_upstream) = zip(
                exchange(&rig.client, &down_data),
                exchange(&rig.upstream, &up_data),
            )
            .await;
            assert_eq!(
                sha(&at_upstream),
                sha(&down_data),
                "{path:?}: client→upstream bytes differ"
            );
            assert_eq!(
                sha(&at_client),
                sha(&up_data),
                "{path:?}: upstream→client bytes differ"
            );
            let (stats, spliced) = rig.relay.await;
            assert_eq!(
                (stats.client_to_upstream, stats.upstream_to_client),
                (N as u64, N as u64),
                "{path:?}"
            );
            assert!(
                matches!(stats.end, RelayEnd::ClientClosed | RelayEnd::UpstreamClosed),
                "{path:?}: {stats:?}"
            );
            let live = &rig.progress;
            assert_eq!(
                live.client_to_upstream
                    .load(std::sync::atomic::Ordering::Relaxed),
                N as u64
            );
            assert_eq!(
                live.upstream_to_client
                    .load(std::sync::atomic::Ordering::Relaxed),
                N as u64
            );
            if path == Path::Splice {
                assert_eq!(
                    spliced,
                    [N as u64, N as u64],
                    "splice path fell back to copying"
                );
            }
        });
    }
}

#[test]
fn client_half_close_then_upstream_replies() {
    for path in PATHS {
        within(async {
            let rig = rig(path, None);
            let reply = random_bytes(300_000);
            let client = async {
                send_and_shut(&rig.client, b"request").await;
                read_to_end(&rig.client).await
            };
            let upstream = async {
                // The upstream sees the request, then EOF, and only then answers.
                assert_eq!(read_to_end(&rig.upstream).await, b"request");
                send_and_shut(&rig.upstream, &reply).await;
            };
            let (got, ()) = zip(client, upstream).await;
            assert_eq!(sha(&got), sha(&reply), "{path:?}");
            let (stats, _) = rig.relay.await;
            assert_eq!(stats.end, RelayEnd::ClientClosed, "{path:?}");
            assert_eq!(
                (stats.client_to_upstream, stats.upstream_to_client),
                (7, reply.len() as u64)
            );
        });
    }
}

#[test]
fn upstream_half_close_then_client_replies() {
    for path in PATHS {
        within(async {
            let rig = rig(path, None);
            let upstream = async {
                send_and_shut(&rig.upstream, b"you first").await;
                read_to_end(&rig.upstream).await
            };
            let client = async {
                assert_eq!(read_to_end(&rig.client).await, b"you first");
                send_and_shut(&rig.client, b"after your EOF").await;
            };
            let (got, ()) = zip(upstream, client).await;
            assert_eq!(got, b"after your EOF", "{path:?}");
            let (stats, _) = rig.relay.await;
            assert_eq!(stats.end, RelayEnd::UpstreamClosed, "{path:?}");
        });
    }
}

#[test]
fn server_speaks_first() {
    for path in PATHS {
        within(async {
            let rig = rig(path, None);
            let mut up = &rig.upstream;
            up.write_all(b"220 ready\r\n").await.unwrap();
            let mut banner = [0u8; 11];
            let mut c = &rig.client;
            rt::timeout(Duration::from_secs(2), c.read_exact(&mut banner))
                .await
                .expect("banner never arrived")
                .unwrap();
            assert_eq!(&banner, b"220 ready\r\n", "{path:?}");
            let (got_up, got_client) = zip(
                async {
                    send_and_shut(&rig.client, b"QUIT\r\n").await;
                    read_to_end(&rig.client).await
                },
                async {
                    let got = read_to_end(&rig.upstream).await;
                    send_and_shut(&rig.upstream, b"221 bye\r\n").await;
                    got
                },
            )
            .await;
            assert_eq!(
                (got_up.as_slice(), got_client.as_slice()),
                (&b"221 bye\r\n"[..], &b"QUIT\r\n"[..])
            );
            assert_eq!(rig.relay.await.0.end, RelayEnd::ClientClosed, "{path:?}");
        });
    }
}

#[test]
fn idle_pair_times_out() {
    for path in PATHS {
        within(async {
            let started = Instant::now();
            let rig = rig(path, Some(Duration::from_millis(300)));
            let (stats, _) = rt::timeout(Duration::from_secs(1), rig.relay)
                .await
                .unwrap_or_else(|| panic!("{path:?}: idle relay still running after 1 s"));
            assert_eq!(stats.end, RelayEnd::IdleTimeout, "{path:?}");
            assert!(
                started.elapsed() >= Duration::from_millis(300),
                "{path:?}: fired early"
            );
            drop((rig.client, rig.upstream));
        });
    }
}

#[test]
fn trickle_keeps_connection_alive() {
    // One byte every 100 ms, 25 times (2.5 s, over four idle timeouts of 600 ms): the relay
    // lives on. Counted, not timed: a starved machine stretches the sleeps but sends every
    // byte, and a stall of up to 500 ms between two bytes still stays inside the timeout.
    const BYTES: usize = 25;
    for path in PATHS {
        within(async {
            let rig = rig(path, Some(Duration::from_millis(600)));
            let started = Instant::now();
            let trickle = async {
                let mut c = &rig.client;
                for _ in 0..BYTES {
                    c.write_all(b".").await.unwrap();
                    rt::sleep(Duration::from_millis(100)).await;
                }
            };
            let sink = async {
                let mut up = &rig.upstream;
                let mut byte = [0u8; 1];
                for _ in 0..BYTES {
                    up.read_exact(&mut byte).await.unwrap();
                }
            };
            zip(trickle, sink).await;
            assert!(started.elapsed() >= Duration::from_millis(2_400));
            // Still relaying after the trickle: a clean close ends it as ClientClosed.
            send_and_shut(&rig.client, b"").await;
            assert!(read_to_end(&rig.upstream).await.is_empty());
            send_and_shut(&rig.upstream, b"").await;
            let (stats, _) = rig.relay.await;
            assert_eq!(stats.end, RelayEnd::ClientClosed, "{path:?}: {stats:?}");
            assert_eq!(
                stats.client_to_upstream, BYTES as u64,
                "{path:?}: {stats:?}"
            );
        });
    }
}

#[test]
fn upstream_reset_mid_stream_is_an_upstream_error() {
    for path in PATHS {
        within(async {
            let rig = rig(path, None);
            let started = Instant::now();
            let flood = async {
                let chunk = vec![7u8; 64 * 1024];
                let mut c = &rig.client;
                while c.write_all(&chunk).await.is_ok()
                    && started.elapsed() < Duration::from_secs(5)
                {}
            };
            let reset = async {
                let mut buf = vec![0u8; 128 * 1024];
                let mut up = &rig.upstream;
                up.read_exact(&mut buf).await.unwrap();
                socket2::SockRef::from(rig.upstream.get_ref())
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                let reset_at = Instant::now();
                drop(rig.upstream);
                let (stats, _) = rt::timeout(Duration::from_secs(1), rig.relay)
                    .await
                    .expect("relay hung after RST");
                // The relay is over: dropping its sockets lets the flood end.
                (stats, reset_at.elapsed())
            };
            let ((), (stats, took)) = zip(flood, reset).await;
            assert!(
                matches!(stats.end, RelayEnd::UpstreamError(_)),
                "{path:?}: {stats:?}"
            );
            assert!(took < Duration::from_millis(500), "{path:?}: took {took:?}");
        });
    }
}

#[test]
fn idle_relay_state_is_small() {
    let (a, b) = tcp_pair();
    let progress = Progress::default();
    let tcp = relay_tcp_with(&a, &b, Some(Duration::from_secs(1)), &progress, true);
    let (mut ca, mut cb) = (TcpHalfClose(&a), TcpHalfClose(&b));
    let generic = relay(&mut ca, &mut cb, Some(Duration::from_secs(1)), &progress);
    let (tcp_size, generic_size) = (std::mem::size_of_val(&tcp), std::mem::size_of_val(&generic));
    eprintln!("relay_tcp future: {tcp_size} B, relay future: {generic_size} B");
    assert!(tcp_size < 1024 && generic_size < 1024);
}

#[test]
fn bytes_arriving_with_or_just_before_the_fin_are_all_delivered() {
    // A short read after the peer's FIN was reported answers the next read as EOF without a
    // syscall; bytes that came before the FIN, in one burst or two, must all arrive.
    for path in PATHS {
        for round in 0..12 {
            within(async {
                let rig = rig(path, None);
                let first = random_bytes(1 + fastrand::usize(..3000));
                let second = random_bytes(fastrand::usize(..3000));
                let upstream = async {
                    let mut w = &rig.upstream;
                    w.write_all(&first).await.unwrap();
                    if round % 2 == 1 {
                        // The first burst is read (short) before the second and the FIN.
                        rt::sleep(Duration::from_millis(20)).await;
                    }
                    w.write_all(&second).await.unwrap();
                    rig.upstream.get_ref().shutdown(Shutdown::Write).unwrap();
                    read_to_end(&rig.upstream).await
                };
                let client = async {
                    let got = read_to_end(&rig.client).await;
                    send_and_shut(&rig.client, b"bye").await;
                    got
                };
                let (at_upstream, at_client) = zip(upstream, client).await;
                let mut want = first.clone();
                want.extend_from_slice(&second);
                assert_eq!(sha(&at_client), sha(&want), "{path:?} round {round}");
                assert_eq!(at_upstream, b"bye", "{path:?} round {round}");
                let (stats, _) = rig.relay.await;
                assert_eq!(stats.end, RelayEnd::UpstreamClosed, "{path:?}");
                assert_eq!(stats.upstream_to_client, want.len() as u64);
            });
        }
    }
}

#[test]
fn urgent_data_mid_stream_neither_stalls_nor_truncates_the_relay() {
    // A client sends bytes, one byte as TCP urgent data (MSG_OOB), then more bytes, with or
    // without closing after. A read at the proxy stops at the urgent mark, and splice(2)
    // stops there for good (only recv skips the mark). The relay guarantees every in-band
    // byte, in order, and no stall; with SO_OOBINLINE off (the default) the urgent byte is
    // out of band, not part of the stream, and is not relayed.
    let mut wrong = Vec::new();
    for path in PATHS {
        for close in [false, true] {
            let (client, proxy_client) = tcp_pair();
            let (proxy_upstream, upstream) = tcp_pair();
            let c = socket2::SockRef::from(client.get_ref());
            c.set_tcp_nodelay(true).unwrap();
            c.send(b"before").unwrap();
            c.send_out_of_band(b"!").unwrap();
            c.send(b"after").unwrap();
            if close {
                c.shutdown(Shutdown::Write).unwrap();
            }
            // Everything is queued at the proxy before the relay's first read (FIONREAD counts
            // the bytes before the mark; loopback has the rest there as fast).
            let start = Instant::now();
            while rustix::io::ioctl_fionread(proxy_client.get_ref()).unwrap() < 6
                && start.elapsed() < Duration::from_secs(2)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(20));
            let progress = Arc::new(Progress::default());
            let _relay = start_relay(path, proxy_client, proxy_upstream, None, progress);
            let (got, done) = within(async {
                let mut got = Vec::new();
                let mut r = (&upstream).take(11);
                let read = rt::timeout(Duration::from_secs(5), r.read_to_end(&mut got)).await;
                if close && read.is_some() {
                    // Then the end of the stream, and nothing else (not the urgent byte).
                    let mut rest = Vec::new();
                    let mut r = &upstream;
                    let end = rt::timeout(Duration::from_secs(5), r.read_to_end(&mut rest)).await;
                    got.extend(rest);
                    return (got, end.map(Result::unwrap));
                }
                (got, read.map(Result::unwrap))
            });
            let got = String::from_utf8_lossy(&got).into_owned();
            if got != "beforeafter" {
                let end = if done.is_some() {
                    "then EOF"
                } else {
                    "then a stall (5 s)"
                };
                wrong.push(format!("{path:?}, client closing: {close}: {got:?} {end}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "sent \"before\" + OOB + \"after\":\n{}",
        wrong.join("\n")
    );
}
