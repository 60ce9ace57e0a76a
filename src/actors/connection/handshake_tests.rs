//! The TLS 1.3 handshake driver and the record stream after it, against rustls's buffered
//! client on a blocking socket in its own thread: bytes arrive intact whatever the record
//! boundaries, close_notify and a bare TCP close read as they do on rustls's stream, KeyUpdates
//! move both directions to new keys, and a client that gives up mid-handshake ends it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rustls::pki_types::ServerName;

use super::{Failure, accept};
use crate::rt::{self, Async};
use crate::testkit::pki;

fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let (cert, key) = pki::self_signed(&["localhost"]);
    let mut server = (*pki::server_config(&cert, &key, None)).clone();
    server.enable_secret_extraction = true;
    (Arc::new(server), pki::client_config(&cert, None))
}

/// A blocking client socket and the proxy's end of it.
fn pair() -> (TcpStream, Async<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, Async::new(s).unwrap())
}

type Client = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A client that has finished its handshake.
fn connected(cfg: Arc<rustls::ClientConfig>, sock: TcpStream) -> Client {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = rustls::StreamOwned::new(rustls::ClientConnection::new(cfg, name).unwrap(), sock);
    while c.conn.is_handshaking() {
        c.conn.complete_io(&mut c.sock).unwrap();
    }
    assert_eq!(
        c.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    c
}

/// Every TLS byte the client has queued.
fn wire(c: &mut Client) -> Vec<u8> {
    let mut out = Vec::new();
    while c.conn.wants_write() {
        c.conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Runs `server` on the runtime while `client` runs in a thread; the client's result.
fn run<T: Send + 'static>(
    server: impl Future<Output = ()>,
    client: impl FnOnce() -> T + Send + 'static,
) -> T {
    let t = std::thread::spawn(client);
    rt::block_on(async {
        rt::timeout(Duration::from_secs(30), server)
            .await
            .expect("server side hung");
    });
    t.join().unwrap()
}

#[test]
fn records_split_at_every_byte_arrive_intact() {
    let (server_cfg, client_cfg) = configs();
    let (sock, proxy) = pair();
    // Two records (100 and 150 bytes of plaintext): 122 + 172 bytes on the wire.
    const WIRE: usize = 294;
    let server = async move {
        let mut tls = accept(proxy, Vec::new(), server_cfg).await.unwrap();
        let mut buf = [0u8; 250];
        for _ in 0..=WIRE {
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.flush().await.unwrap();
        }
    };
    run(server, move || {
        let mut c = connected(client_cfg, sock);
        for k in 0..=WIRE {
            let (a, b) = ([k as u8; 100], [!(k as u8); 150]);
            c.conn.writer().write_all(&a).unwrap();
            c.conn.writer().write_all(&b).unwrap();
            let bytes = wire(&mut c);
            assert_eq!(bytes.len(), WIRE);
            c.sock.write_all(&bytes[..k]).unwrap();
            std::thread::sleep(Duration::from_micros(200));
            c.sock.write_all(&bytes[k..]).unwrap();
            let mut echo = [0u8; 250];
            c.read_exact(&mut echo).unwrap();
            assert_eq!(&echo[..100], &a, "split at {k}");
            assert_eq!(&echo[100..], &b, "split at {k}");
        }
    });
}

#[test]
fn megabytes_of_full_records_cross_both_ways_then_close_notify() {
    let (server_cfg, client_cfg) = configs();
    let (sock, proxy) = pair();
    let up: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let down: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
    let (up2, down2) = (up.clone(), down.clone());
    let server = async move {
        let mut tls = accept(proxy, Vec::new(), server_cfg).await.unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        assert!(got == up2, "upload differs ({} bytes)", got.len());
        // Odd write sizes: records of every length, several per send.
        for chunk in down2.chunks(12_345) {
            tls.write_all(chunk).await.unwrap();
        }
        tls.close().await.unwrap();
    };
    let got = run(server, move || {
        let mut c = connected(client_cfg, sock);
        let mut at = 0;
        while at < up.len() {
            let n = (1 + fastrand::usize(..70_000)).min(up.len() - at);
            c.write_all(&up[at..at + n]).unwrap();
            at += n;
        }
        c.conn.send_close_notify();
        c.flush().unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        got
    });
    assert!(got == down, "download differs ({} bytes)", got.len());
}

#[test]
fn close_notify_in_the_same_read_as_data_ends_the_stream_cleanly() {
    let (server_cfg, client_cfg) = configs();
    let (sock, proxy) = pair();
    let server = async move {
        let mut tls = accept(proxy, Vec::new(), server_cfg).await.unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
        let mut more = [0u8; 8];
        assert_eq!(tls.read(&mut more).await.unwrap(), 0, "EOF stays EOF");
    };
    run(server, move || {
        let mut c = connected(client_cfg, sock);
        c.conn.writer().write_all(b"last words").unwrap();
        c.conn.send_close_notify();
        let bytes = wire(&mut c);
        c.sock.write_all(&bytes).unwrap();
        // Keep the socket open until the server has read: its EOF must be the close_notify.
        let mut rest = Vec::new();
        let _ = c.sock.read_to_end(&mut rest);
    });
}

#[test]
fn a_tcp_close_without_close_notify_reads_as_unexpected_eof_after_the_data() {
    let (server_cfg, client_cfg) = configs();
    let (sock, proxy) = pair();
    let server = async move {
        let mut tls = accept(proxy, Vec::new(), server_cfg).await.unwrap();
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"bytes");
        let e = tls.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    };
    run(server, move || {
        let mut c = connected(client_cfg, sock);
        c.write_all(b"bytes").unwrap();
        c.flush().unwrap();
        c.sock.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = c.sock.read_to_end(&mut rest);
    });
}

#[test]
fn key_updates_move_both_directions_to_new_keys() {
    let (server_cfg, client_cfg) = configs();
    let (sock, proxy) = pair();
    let server = async move {
        let mut tls = accept(proxy, Vec::new(), server_cfg).await.unwrap();
        let mut buf = [0u8; 4];
        for _ in 0..3 {
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.flush().await.unwrap();
        }
    };
    run(server, move || {
        let mut c = connected(client_cfg, sock);
        for round in 0..3u8 {
            // update_requested: the server must answer with its own KeyUpdate, or the client
            // cannot read the echo under its new receiving key.
            c.conn.refresh_traffic_keys().unwrap();
            c.write_all(&[round; 4]).unwrap();
            c.flush().unwrap();
            let mut echo = [0u8; 4];
            c.read_exact(&mut echo).unwrap();
            assert_eq!(echo, [round; 4]);
        }
    });
}

#[test]
fn a_key_update_sent_with_the_clients_finished_is_answered() {
    let (server_cfg, client_cfg) = configs();
    let (sock, proxy) = pair();
    let server = async move {
        let mut tls = accept(proxy, Vec::new(), server_cfg).await.unwrap();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(&buf).await.unwrap();
        tls.flush().await.unwrap();
    };
    run(server, move || {
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(client_cfg, name).unwrap();
        let mut c = rustls::StreamOwned::new(conn, sock);
        // Up to the server's flight; the client's Finished is queued, not sent.
        while c.conn.is_handshaking() {
            if c.conn.wants_write() {
                c.conn.write_tls(&mut c.sock).unwrap();
            } else {
                c.conn.read_tls(&mut c.sock).unwrap();
                c.conn.process_new_packets().unwrap();
            }
        }
        c.conn.refresh_traffic_keys().unwrap();
        c.conn.writer().write_all(b"data").unwrap();
        // Finished, KeyUpdate and data in one write: the driver reads them together.
        let bytes = wire(&mut c);
        c.sock.write_all(&bytes).unwrap();
        let mut echo = [0u8; 4];
        c.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"data");
    });
}

#[test]
fn an_idle_stream_holds_no_buffer() {
    let (server_cfg, client_cfg) = configs();
    let (sock, proxy) = pair();
    let server = async move {
        let mut tls = accept(proxy, Vec::new(), server_cfg).await.unwrap();
        let mut buf = [0u8; 3];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(&buf).await.unwrap();
        tls.flush().await.unwrap();
        assert!(
            futures_lite::future::poll_once(tls.read(&mut buf))
                .await
                .is_none()
        );
        assert!(!tls.holds_buffer(), "an idle stream gives its buffers back");
    };
    run(server, move || {
        let mut c = connected(client_cfg, sock);
        c.write_all(b"abc").unwrap();
        c.flush().unwrap();
        let mut echo = [0u8; 3];
        c.read_exact(&mut echo).unwrap();
        let mut rest = Vec::new();
        let _ = c.sock.read_to_end(&mut rest);
    });
}

#[test]
fn a_client_that_closes_mid_handshake_ends_it() {
    let (server_cfg, client_cfg) = configs();
    let (sock, proxy) = pair();
    let server = async move {
        let e = accept(proxy, Vec::new(), server_cfg).await.err().unwrap();
        assert!(matches!(e, Failure::Closed), "{e:?}");
        assert_eq!(e.describe(), "client closed during the handshake");
    };
    run(server, move || {
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client_cfg, name).unwrap();
        let mut sock = sock;
        conn.write_tls(&mut sock).unwrap();
        sock.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest);
    });
}

#[test]
fn garbage_mid_handshake_gets_an_alert_and_ends_it() {
    let (server_cfg, client_cfg) = configs();
    let (sock, proxy) = pair();
    let server = async move {
        let e = accept(proxy, Vec::new(), server_cfg).await.err().unwrap();
        assert!(matches!(e, Failure::Tls(_)), "{e:?}");
        assert!(e.describe().starts_with("sent alert"), "{}", e.describe());
    };
    let rest = run(server, move || {
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client_cfg, name).unwrap();
        let mut sock = sock;
        conn.write_tls(&mut sock).unwrap();
        sock.write_all(&[22, 3, 3, 0, 4, 99, 0, 0, 0]).unwrap();
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest);
        rest
    });
    // The server's flight, then its alert record (encrypted under the handshake keys in TLS
    // 1.3, so only its type shows) before the close.
    assert!(rest.len() > 100, "{} bytes", rest.len());
    assert_eq!(rest[rest.len() - 24..][0], 23, "last record is protected");
}

#[test]
fn key_update_requests_while_our_output_is_full_get_one_answer() {
    // RFC 8446 §4.6.3: a peer that receives several update_requested while silent answers
    // with a single KeyUpdate. Our answers go in the output's reserve: one per request would
    // overflow it, and an answer that did not fit would still move our key (the client could
    // no longer read us).
    const REQUESTS: usize = 6;
    let (server_cfg, client_cfg) = configs();
    let (sock, proxy) = pair();
    let blob: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 253) as u8).collect();
    let blob2 = blob.clone();
    let server = async move {
        let mut tls = accept(proxy, Vec::new(), server_cfg).await.unwrap();
        // Fill the socket and our output while the client is not reading.
        let mut sent = 0;
        loop {
            let chunk = &blob2[sent % blob2.len()..];
            match futures_lite::future::poll_once(tls.write(chunk)).await {
                Some(n) => sent += n.unwrap(),
                None => break,
            }
        }
        // Every request arrives while our output is full.
        let mut buf = [0u8; REQUESTS];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, [7; REQUESTS]);
        let rest = blob2.len() - sent % blob2.len();
        tls.write_all(&blob2[blob2.len() - rest..]).await.unwrap();
        tls.close().await.unwrap();
        sent + rest
    };
    let client = move || {
        let mut c = connected(client_cfg, sock);
        // Straight to the socket: rustls's stream would read (and so drain us) while writing.
        for _ in 0..REQUESTS {
            c.conn.refresh_traffic_keys().unwrap();
            c.conn.writer().write_all(&[7]).unwrap();
        }
        let bytes = wire(&mut c);
        c.sock.write_all(&bytes).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got)
            .expect("the client reads every record");
        got
    };
    let t = std::thread::spawn(client);
    let sent = rt::block_on(async {
        rt::timeout(Duration::from_secs(30), server)
            .await
            .expect("server side hung")
    });
    let got = t.join().unwrap();
    assert_eq!(got.len(), sent);
    assert!(got.chunks(blob.len()).all(|c| blob.starts_with(c)));
}
