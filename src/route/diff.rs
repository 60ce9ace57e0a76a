//! `diff(old, new)`: which listeners a reload starts, stops and retargets.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::RouteTable;

/// What the Supervisor does to go from one route table to the next.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ListenerPlan {
    /// Listeners to bind (in the new table only).
    pub start: Vec<SocketAddr>,
    /// Listeners to stop accepting on (in the old table only).
    pub stop: Vec<SocketAddr>,
    /// Listeners in both: they keep their socket and take the new routes.
    pub retarget: Vec<SocketAddr>,
}

/// Computes the plan from `old` to `new` (addresses in sorted order).
pub(crate) fn diff(old: &RouteTable, new: &RouteTable) -> ListenerPlan {
    let a: BTreeSet<_> = old.listeners.keys().copied().collect();
    let b: BTreeSet<_> = new.listeners.keys().copied().collect();
    ListenerPlan {
        start: b.difference(&a).copied().collect(),
        stop: a.difference(&b).copied().collect(),
        retarget: a.intersection(&b).copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{HostMap, Listener};

    fn table(ports: &[u16]) -> RouteTable {
        let mut t = RouteTable::default();
        for p in ports {
            let addr: SocketAddr = ([127, 0, 0, 1], *p).into();
            t.listeners.insert(
                addr,
                Listener {
                    addr,
                    plain: None,
                    hosts: HostMap::default(),
                    proxy_protocol: Default::default(),
                },
            );
        }
        t
    }

    #[test]
    fn start_stop_retarget() {
        let plan = diff(&table(&[1, 2, 3]), &table(&[2, 3, 4]));
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(plan.start, vec![a(4)]);
        assert_eq!(plan.stop, vec![a(1)]);
        assert_eq!(plan.retarget, vec![a(2), a(3)]);
    }

    #[test]
    fn identical_tables_only_retarget() {
        let plan = diff(&table(&[5]), &table(&[5]));
        assert!(plan.start.is_empty() && plan.stop.is_empty());
        assert_eq!(plan.retarget.len(), 1);
    }
}
