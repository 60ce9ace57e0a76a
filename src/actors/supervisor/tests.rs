//! The Supervisor over a recording data plane: what it hands the plane, in which order, and
//! that a plane's refusal changes nothing.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::plane::{BoxFuture, Change, DataPlane, PlaneStatus};
use super::{ApplyError, Status, SupervisorHandle};
use crate::config::ConfigInput;
use crate::metrics::Metrics;
use crate::route::{HostMap, Listener, RouteTable};
use crate::rt;

/// A plane that records every call and refuses applies while `refuse` is set.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<String>>>,
    refuse: Arc<Mutex<bool>>,
}

impl Recorder {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("worker 1: refused")]
struct Refused;

impl DataPlane for Recorder {
    fn apply(&mut self, change: Change) -> BoxFuture<'_, Result<Vec<SocketAddr>, ApplyError>> {
        let started: Vec<SocketAddr> = change.bound.iter().map(|(a, _)| *a).collect();
        self.calls.lock().unwrap().push(format!(
            "apply generation={} bound={} stop={}",
            change.table.generation(),
            started.len(),
            change.plan.stop.len()
        ));
        let refuse = *self.refuse.lock().unwrap();
        Box::pin(async move {
            if refuse {
                return Err(ApplyError::Workers(Box::new(Refused)));
            }
            Ok(started)
        })
    }

    fn stop_accepting(&mut self) -> BoxFuture<'_, ()> {
        self.calls.lock().unwrap().push("stop_accepting".into());
        Box::pin(async {})
    }

    fn drain(&mut self, graceful: bool, _timeout: Duration) -> BoxFuture<'_, ()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("drain graceful={graceful}"));
        Box::pin(async {})
    }

    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            runs_in: "a recorder",
            open: Some(0),
        }
    }
}

/// A table with one listener on each of `addrs` (port 0: the Supervisor binds a free port).
fn table(addrs: &[&str]) -> RouteTable {
    let mut t = RouteTable::default();
    for a in addrs {
        let addr: SocketAddr = a.parse().unwrap();
        let listener = Listener {
            addr,
            plain: None,
            hosts: HostMap::default(),
            proxy_protocol: Default::default(),
        };
        t.insert(listener);
    }
    t
}

fn bundle() -> Arc<crate::config::Bundle> {
    let input = ConfigInput::default();
    Arc::new(crate::config::read(&input).0)
}

fn start(plane: &Recorder) -> (SupervisorHandle, Arc<Status>) {
    let status = Arc::new(Status::default());
    let handle = rt::block_on(async {
        SupervisorHandle::spawn(
            Box::new(plane.clone()),
            Metrics::new(),
            status.clone(),
            Default::default(),
        )
    });
    (handle, status)
}

#[test]
fn a_refused_apply_changes_nothing_and_says_why() {
    let plane = Recorder::default();
    let (sup, status) = start(&plane);
    rt::block_on(async {
        let first = sup.apply(table(&["127.0.0.1:0"]), Vec::new(), bundle());
        let report = first.await.unwrap().unwrap();
        assert_eq!(report.generation, 1);
        assert_eq!(report.started.len(), 1);
        *plane.refuse.lock().unwrap() = true;
        let second = sup.apply(table(&["127.0.0.2:0"]), Vec::new(), bundle());
        let err = second.await.unwrap().unwrap_err();
        assert!(matches!(err, ApplyError::Workers(_)), "{err:?}");
        // Still the first table, with one hot-upgrade copy; the refusal is the last reload.
        let snapshot = status.get();
        assert_eq!(snapshot.generation(), 1);
        assert!(snapshot.ready);
        let last = snapshot.last_reload.clone().unwrap();
        assert!(!last.ok);
        assert_eq!(last.errors, vec!["worker 1: refused".to_string()]);
        let copies = sup.handover().await.unwrap();
        let addrs: Vec<SocketAddr> = copies.iter().map(|(a, _)| *a).collect();
        assert_eq!(addrs, vec!["127.0.0.1:0".parse().unwrap()]);
    });
    assert_eq!(
        plane.calls(),
        vec![
            "apply generation=1 bound=1 stop=0",
            "apply generation=2 bound=1 stop=1"
        ]
    );
}

#[test]
fn shutdown_stops_accepting_then_drains_and_refuses_applies() {
    let plane = Recorder::default();
    let (sup, status) = start(&plane);
    rt::block_on(async {
        let first = sup.apply(table(&["127.0.0.1:0"]), Vec::new(), bundle());
        first.await.unwrap().unwrap();
        sup.shutdown(true, Duration::from_secs(1)).await.unwrap();
        assert!(!status.get().ready);
        assert!(sup.handover().await.unwrap().is_empty(), "copies dropped");
        let late = sup.apply(table(&["127.0.0.1:0"]), Vec::new(), bundle());
        assert!(matches!(late.await.unwrap(), Err(ApplyError::ShuttingDown)));
    });
    assert_eq!(
        plane.calls(),
        vec![
            "apply generation=1 bound=1 stop=0",
            "stop_accepting",
            "drain graceful=true"
        ]
    );
}
