//! Admin server tests over real loopback sockets (port 0) with a tiny HTTP/1.1 client.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::close::CloseReason;
use crate::route::MappingId;
use crate::rt::ControlStream;

/// A running admin server on 127.0.0.1:0 plus the knobs the tests turn.
struct Fixture {
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    _server: crate::rt::Task<()>,
    /// Stops the server when the fixture drops.
    _stop: crate::rt::Trigger,
}

fn start(limits: AdminLimits) -> Fixture {
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ready);
    let state = AdminState {
        metrics: Arc::clone(&metrics),
        ready: Arc::new(move || flag.load(Ordering::SeqCst)),
        config_json: Arc::new(|| serde_json::json!({"generation": 3, "listeners": []})),
        workers: None,
        status: Arc::new(|| Box::pin(async { status::tests::sample() })),
        status_json: None,
    };
    let listener =
        crate::rt::block_on(bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))).expect("bind admin");
    let addr = listener.get_ref().local_addr().expect("local addr");
    let (stop, stopped) = crate::rt::tripwire();
    let server = crate::rt::spawn(serve_with(listener, state, limits, stopped));
    Fixture {
        addr,
        ready,
        metrics,
        _server: server,
        _stop: stop,
    }
}

/// A parsed response: status code, header block (lowercased), body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// Sends `method path` with `Connection: close` and reads the whole response.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut s = ControlStream::connect(addr).await.expect("connect");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn get(f: &Fixture, path: &str) -> Reply {
    let addr = f.addr;
    let path = path.to_string();
    crate::rt::block_on(async move {
        crate::rt::timeout(Duration::from_secs(5), request(addr, "GET", &path))
            .await
            .expect("admin answered within 5 s")
    })
}

#[test]
fn alive_ready_metrics_config_and_errors() {
    let f = start(AdminLimits::default());

    let alive = get(&f, "/ambassador/v0/check_alive");
    assert_eq!(alive.status, 200);
    assert!(alive.body.contains("liveness check OK"), "{}", alive.body);

    let not_ready = get(&f, "/ambassador/v0/check_ready");
    assert_eq!(not_ready.status, 503);
    f.ready.store(true, Ordering::SeqCst);
    let ready = get(&f, "/ambassador/v0/check_ready");
    assert_eq!(ready.status, 200);
    assert!(ready.body.contains("readiness check OK"), "{}", ready.body);

    let id = MappingId {
        name: "pg".into(),
        namespace: "default".into(),
        port: 5432,
        host: String::new(),
    };
    let m = f.metrics.mapping(&id);
    m.accepted();
    m.ended(CloseReason::ClientClosed, 3, 4);
    let metrics = get(&f, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .head
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        metrics.head
    );
    assert!(
        metrics.body.contains(
            "tcpmap_connections_accepted_total{mapping=\"pg\",namespace=\"default\",port=\"5432\",host=\"\"} 1"
        ),
        "{}",
        metrics.body
    );

    let config = get(&f, "/config");
    assert_eq!(config.status, 200);
    assert!(config.head.contains("content-type: application/json"));
    let json: serde_json::Value = serde_json::from_str(&config.body).expect("json body");
    assert_eq!(json["generation"], 3);

    assert_eq!(get(&f, "/nope").status, 404);
    assert_eq!(get(&f, "/metrics?x=1").status, 200, "query is ignored");

    let post = crate::rt::block_on(request(f.addr, "POST", "/metrics"));
    assert_eq!(post.status, 405);
    assert!(post.head.contains("allow: get, head"));
    let head = crate::rt::block_on(request(f.addr, "HEAD", "/ambassador/v0/check_alive"));
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[test]
fn silent_client_does_not_block_others() {
    let f = start(AdminLimits::default());
    // Connects, sends nothing, stays open for the whole test.
    let _silent = TcpStream::connect(f.addr).expect("connect");
    let _half = {
        let mut s = TcpStream::connect(f.addr).expect("connect");
        std::io::Write::write_all(&mut s, b"GET /metr").expect("partial write");
        s
    };
    let started = Instant::now();
    let alive = get(&f, "/ambassador/v0/check_alive");
    assert_eq!(alive.status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn header_timeout_closes_idle_client() {
    let f = start(AdminLimits {
        header_timeout: Duration::from_millis(200),
        ..AdminLimits::default()
    });
    let addr = f.addr;
    let closed_after = crate::rt::block_on(async move {
        let mut s = ControlStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        let started = Instant::now();
        let mut buf = Vec::new();
        // hyper may answer 408 or just close; either way the read must end.
        let _ = crate::rt::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        started.elapsed()
    });
    assert!(
        closed_after < Duration::from_secs(3),
        "idle client kept for {closed_after:?}"
    );
}

#[test]
fn connection_limit_closes_extra_clients_and_frees_slots() {
    let f = start(AdminLimits {
        max_connections: 2,
        header_timeout: Duration::from_millis(300),
        connection_timeout: Duration::from_secs(5),
    });
    let addr = f.addr;
    crate::rt::block_on(async move {
        let _a = ControlStream::connect(addr).await.expect("connect a");
        let _b = ControlStream::connect(addr).await.expect("connect b");
        // Give the accept loop time to take both slots.
        crate::rt::sleep(Duration::from_millis(50)).await;
        let mut c = ControlStream::connect(addr).await.expect("connect c");
        let _ = c
            .write_all(b"GET /ambassador/v0/check_alive HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let read = crate::rt::timeout(Duration::from_secs(2), c.read_to_end(&mut buf)).await;
        assert!(read.is_some(), "extra client was not closed");
        assert!(
            !String::from_utf8_lossy(&buf).contains("200 OK"),
            "extra client was served"
        );
        // The two idle clients hit the header timeout; their slots come back.
        crate::rt::sleep(Duration::from_millis(600)).await;
        let r = crate::rt::timeout(
            Duration::from_secs(2),
            request(addr, "GET", "/ambassador/v0/check_alive"),
        )
        .await
        .expect("served after slots freed");
        assert_eq!(r.status, 200);
    });
}

#[test]
fn panicking_state_gives_500_and_counts() {
    let metrics = Metrics::new();
    let state = AdminState {
        metrics: Arc::clone(&metrics),
        ready: Arc::new(|| panic!("boom")),
        config_json: Arc::new(|| serde_json::Value::Null),
        workers: None,
        status: Arc::new(|| Box::pin(async { status::tests::sample() })),
        status_json: None,
    };
    let req = Request::get("/ambassador/v0/check_ready")
        .body(())
        .expect("request");
    let r = respond(&state, &req, Fetched::Nothing);
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        metrics
            .render()
            .contains("tcpmap_internal_errors_total{what=\"admin\"} 1")
    );
}

#[test]
fn stop_closes_the_listener_and_open_connections() {
    let f = start(AdminLimits::default());
    let Fixture {
        addr,
        _server: server,
        _stop: stop,
        ..
    } = f;
    crate::rt::block_on(async move {
        // A keep-alive client that has been answered once and stays open.
        let mut open = ControlStream::connect(addr).await.expect("connect");
        open.write_all(b"GET /ambassador/v0/check_alive HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut first = [0u8; 12];
        open.read_exact(&mut first).await.expect("answer");
        assert_eq!(&first, b"HTTP/1.1 200");

        stop.fire();
        crate::rt::timeout(Duration::from_secs(2), server)
            .await
            .expect("server stopped within 2 s");
        let refused = ControlStream::connect(addr).await;
        assert!(refused.is_err(), "admin still accepts after stop");
        // The open connection ends too (well before its 30 s lifetime cap).
        let mut rest = Vec::new();
        let ended = crate::rt::timeout(Duration::from_secs(2), open.read_to_end(&mut rest)).await;
        assert!(ended.is_some(), "open admin connection outlived the stop");
    });
}

/// `/` is the status page (HTML with the snapshot inlined) and `/status.json` its data.
#[test]
fn the_status_page_and_its_json_are_served() {
    let f = start(AdminLimits::default());
    let page = get(&f, "/");
    assert_eq!(page.status, 200);
    assert!(page.head.contains("content-type: text/html; charset=utf-8"));
    assert!(page.body.contains("<title>tcpmap status</title>"));
    assert!(page.body.contains("\"uptime_s\":90"), "{}", page.body);
    let json = get(&f, "/status.json");
    assert_eq!(json.status, 200);
    assert!(json.head.contains("content-type: application/json"));
    let v: serde_json::Value = serde_json::from_str(&json.body).expect("json body");
    assert_eq!(v["mappings"][0]["mapping"], status::tests::HOSTILE);
    let head = crate::rt::block_on(request(f.addr, "HEAD", "/status.json"));
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(get(&f, "/status.json/x").status, 404);
}
