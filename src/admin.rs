//! The `--admin` HTTP/1.1 server: liveness, readiness, `/metrics`, `/config` and the status
//! page (`/` and `/status.json`, `status.rs`).
//!
//! ```text
//! accept loop ──(slot free?)──► task per connection ──► hyper http1 ──► route()
//!      │ no slot: close at once        │ whole connection capped by a deadline
//! ```
//!
//! It reads state only through the closures in [`AdminState`]; it never touches routes,
//! listeners or actors. It runs until its stop [`Tripwire`] trips (the embedding API trips it
//! when a shutdown has finished draining): the accept loop returns, which closes the listening
//! socket, and connections still open end at their next poll. One slow or hostile client cannot stall the others: each
//! connection has its own task, a header read timeout, an overall deadline, and the
//! number of concurrent connections is bounded (extra ones are closed unanswered).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::metrics::Metrics;
use crate::rt::{ControlListener, ControlStream, Tripwire};

/// What the admin endpoints read. Cheap to clone (all `Arc`s).
#[derive(Clone)]
pub(crate) struct AdminState {
    /// Rendered at `/metrics`.
    pub(crate) metrics: Arc<Metrics>,
    /// `/ambassador/v0/check_ready`: true once every listener of the active config is bound.
    pub(crate) ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// `/config`: the active route table, generation and last reload result.
    pub(crate) config_json: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    /// With worker processes: where `/metrics` totals and `/config`'s `workers` come from.
    pub(crate) workers: Option<Workers>,
    /// `/` and `/status.json`: the status page's snapshot (totals over every worker).
    pub(crate) status:
        Arc<dyn Fn() -> futures_lite::future::Boxed<status::StatusSnapshot> + Send + Sync>,
    /// `/status.json` written directly (the same bytes as the snapshot's `json()`, made
    /// without building it; `None`: from `status`).
    pub(crate) status_json:
        Option<Arc<dyn Fn() -> futures_lite::future::Boxed<Vec<u8>> + Send + Sync>>,
}

/// What the admin endpoint asks the worker pool (answers come over the control channels).
#[derive(Clone)]
pub(crate) struct Workers {
    /// OpenMetrics text summed over the Supervisor and every worker.
    pub(crate) metrics: Arc<dyn Fn() -> futures_lite::future::Boxed<String> + Send + Sync>,
    /// The workers as `/config` lists them.
    pub(crate) status:
        Arc<dyn Fn() -> futures_lite::future::Boxed<serde_json::Value> + Send + Sync>,
}

/// What a request needed from the workers, fetched before answering it.
enum Fetched {
    Nothing,
    Metrics(String),
    Workers(serde_json::Value),
    Status(Box<status::StatusSnapshot>),
    StatusJson(Vec<u8>),
}

/// Limits that keep one client from hurting the others.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdminLimits {
    /// Concurrent admin connections; more are closed at once.
    pub(crate) max_connections: usize,
    /// Time allowed to send a complete request head.
    pub(crate) header_timeout: Duration,
    /// Hard cap on one connection's lifetime (keep-alive included).
    pub(crate) connection_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(30),
        }
    }
}

/// Binds the admin listener (address reuse as std sets it on Unix).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<ControlListener> {
    ControlListener::bind(addr)
}

/// Serves the admin endpoints with the default limits until `stop` trips (or the future is
/// dropped).
pub(crate) async fn serve(listener: ControlListener, state: AdminState, stop: Tripwire) {
    serve_with(listener, state, AdminLimits::default(), stop).await;
}

/// Serves the admin endpoints with explicit `limits` until `stop` trips (or the future is
/// dropped); returns having closed the listening socket.
///
/// Connection tasks already running end when `stop` trips, or on their own (bounded by
/// `limits.connection_timeout`).
pub(crate) async fn serve_with(
    listener: ControlListener,
    state: AdminState,
    limits: AdminLimits,
    stop: Tripwire,
) {
    use futures_lite::FutureExt;
    let state = Arc::new(state);
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = async { Some(listener.accept().await) }
            .or(async {
                stop.tripped().await;
                None
            })
            .await;
        let stream = match accepted {
            // Stopped: returning drops (closes) the listener.
            None => return,
            Some(Ok((stream, _peer))) => stream,
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "admin: accept failed");
                crate::rt::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&open, limits.max_connections) else {
            tracing::debug!("admin: too many connections; closing one");
            drop(stream);
            continue;
        };
        let state = Arc::clone(&state);
        let stop = stop.clone();
        crate::rt::detach(async move {
            let _slot = slot;
            let served =
                crate::rt::timeout(limits.connection_timeout, connection(stream, state, limits))
                    .or(async {
                        stop.tripped().await;
                        Some(())
                    })
                    .await;
            if served.is_none() {
                tracing::debug!("admin: connection deadline reached");
            }
        });
    }
}

/// One admin connection slot; released on drop (also when the task dies).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(Arc::clone(open)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn connection(stream: ControlStream, state: Arc<AdminState>, limits: AdminLimits) {
    let io = smol_hyper::rt::FuturesIo::new(stream);
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let state = Arc::clone(&state);
        async move {
            let fetched = match (&state.workers, req.uri().path()) {
                (Some(w), "/metrics") if req.method() == Method::GET => {
                    Fetched::Metrics((w.metrics)().await)
                }
                (Some(w), "/config") if req.method() == Method::GET => {
                    Fetched::Workers((w.status)().await)
                }
                (_, "/status.json") if req.method() == Method::GET => match &state.status_json {
                    Some(json) => Fetched::StatusJson(json().await),
                    None => Fetched::Status(Box::new((state.status)().await)),
                },
                (_, "/") if req.method() == Method::GET => {
                    Fetched::Status(Box::new((state.status)().await))
                }
                _ => Fetched::Nothing,
            };
            Ok::<_, Infallible>(respond(&state, &req, fetched))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(smol_hyper::rt::SmolTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    if let Err(e) = builder.serve_connection(io, service).await {
        tracing::debug!(error = %e, "admin: connection ended with an error");
    }
}

/// Answers one request; a panic in a state closure becomes a 500 and a metric.
fn respond<B>(state: &AdminState, req: &Request<B>, fetched: Fetched) -> Response<Full<Bytes>> {
    let openmetrics = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    match catch_unwind(AssertUnwindSafe(|| {
        route(state, req.method(), req.uri().path(), openmetrics, fetched)
    })) {
        Ok(response) => response,
        Err(_) => {
            state.metrics.internal_error("admin");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

/// The endpoint table.
fn route(
    state: &AdminState,
    method: &Method,
    path: &str,
    openmetrics: bool,
    fetched: Fetched,
) -> Response<Full<Bytes>> {
    const KNOWN: [&str; 6] = [
        "/ambassador/v0/check_alive",
        "/ambassador/v0/check_ready",
        "/metrics",
        "/config",
        "/",
        "/status.json",
    ];
    if !KNOWN.contains(&path) {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    // HEAD is a GET without a body (hyper drops the body).
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/ambassador/v0/check_alive" => text(StatusCode::OK, "tcpmap liveness check OK\n"),
        "/ambassador/v0/check_ready" if (state.ready)() => {
            text(StatusCode::OK, "tcpmap readiness check OK\n")
        }
        "/ambassador/v0/check_ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "tcpmap not ready: listeners not all bound\n",
        ),
        "/metrics" => {
            let om = match fetched {
                Fetched::Metrics(text) => text,
                _ => state.metrics.render_openmetrics(),
            };
            if openmetrics {
                with_type(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    om.into_bytes(),
                )
            } else {
                with_type(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    crate::metrics::openmetrics_to_prometheus(&om).into_bytes(),
                )
            }
        }
        "/" | "/status.json" => {
            let body = match (fetched, path) {
                (Fetched::StatusJson(body), _) => body,
                (Fetched::Status(snapshot), "/") => snapshot.page(),
                (Fetched::Status(snapshot), _) => snapshot.json(),
                // HEAD: the headers of a GET, without building a snapshot.
                _ => Vec::new(),
            };
            with_type(StatusCode::OK, status::content_type(path), body)
        }
        _ => {
            let mut json = (state.config_json)();
            if let (Fetched::Workers(w), Some(obj)) = (fetched, json.as_object_mut()) {
                obj.insert("workers".to_string(), w);
            }
            let mut body = serde_json::to_vec_pretty(&json).unwrap_or_else(|_| b"null".to_vec());
            body.push(b'\n');
            with_type(StatusCode::OK, "application/json", body)
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) mod status;
#[cfg(test)]
mod tests;
