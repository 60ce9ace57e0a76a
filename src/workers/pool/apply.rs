//! The pool's two-phase apply: every worker prepares the Supervisor's bundle with copies of
//! the listening sockets and its mappings' shared-counter slots; only when all have, each is
//! told to commit. One failure aborts the workers that prepared, and the pool keeps its old
//! sockets.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use super::{Current, Pool};
use crate::config::Bundle;
use crate::route::MappingId;
use crate::rt;
use crate::workers::codec::{FromWorker, PoolError, Slot, ToWorker};
use crate::workers::shm::SLOTS;

impl Pool {
    pub(super) async fn apply(
        &mut self,
        generation: u64,
        bundle: Arc<Bundle>,
        mappings: Vec<MappingId>,
        new: Vec<(SocketAddr, TcpListener)>,
        stop: Vec<SocketAddr>,
    ) -> Result<(), PoolError> {
        if self.shutting_down {
            return Err(PoolError::ShuttingDown);
        }
        // The sockets of the new config: the kept ones and the new ones.
        let mut sockets = std::mem::take(&mut self.sockets);
        let mut removed = BTreeMap::new();
        for addr in &stop {
            if let Some(s) = sockets.remove(addr) {
                removed.insert(*addr, s);
            }
        }
        let added: Vec<SocketAddr> = new.iter().map(|(a, _)| *a).collect();
        sockets.extend(new);
        let slots = self.slots_for(&mappings);
        self.sockets = sockets;
        let result = self.prepare_all(generation, &bundle, &slots).await;
        if let Err(e) = result {
            // Put the old sockets back; the new ones close.
            for addr in &added {
                self.sockets.remove(addr);
            }
            self.sockets.extend(removed);
            return Err(e);
        }
        self.current = Some(Current {
            generation,
            bundle,
            slots,
        });
        let ids: Vec<u32> = self.workers.keys().copied().collect();
        let commits = ids.iter().filter_map(|id| {
            let link = self.workers.get(id)?.link.clone();
            Some(rt::spawn(async move {
                link.call(ToWorker::Commit, Vec::new()).await
            }))
        });
        let commits: Vec<_> = commits.collect();
        for (id, task) in ids.iter().zip(commits) {
            match task.await {
                Ok(FromWorker::Committed { generation, keeps }) => {
                    if let Some(w) = self.workers.get_mut(id) {
                        w.generation = generation;
                        w.keeps = keeps;
                    }
                }
                // It died between prepare and commit: its replacement starts on this config.
                other => tracing::warn!(worker = id, reply = ?other, "worker did not commit"),
            }
        }
        // `removed` closes here: every worker has stopped those listeners.
        drop(removed);
        Ok(())
    }

    /// Asks every worker to prepare; on any failure, aborts the ones that did.
    async fn prepare_all(
        &mut self,
        generation: u64,
        bundle: &Arc<Bundle>,
        slots: &[Slot],
    ) -> Result<(), PoolError> {
        let mut tasks = Vec::new();
        let ids: Vec<u32> = self.workers.keys().copied().collect();
        for id in ids {
            let msg = self.prepare_msg(generation, bundle, slots);
            let fds = self.socket_fds(id).map_err(PoolError::Descriptor)?;
            let Some(w) = self.workers.get(&id) else {
                continue;
            };
            let link = w.link.clone();
            tasks.push((id, rt::spawn(async move { link.call(msg, fds).await })));
        }
        let mut failure = None;
        let mut prepared = Vec::new();
        for (id, task) in tasks {
            match PoolError::expect(id, task.await, |r| *r == FromWorker::Prepared) {
                Ok(()) => prepared.push(id),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let Some(failure) = failure else {
            return Ok(());
        };
        for id in prepared {
            if let Some(w) = self.workers.get(&id) {
                let _ = w.link.call(ToWorker::Abort, Vec::new()).await;
            }
        }
        tracing::warn!(%failure, "a worker could not apply the config; every worker keeps the old one");
        Err(failure)
    }

    pub(super) fn prepare_msg(
        &self,
        generation: u64,
        bundle: &Arc<Bundle>,
        slots: &[Slot],
    ) -> ToWorker {
        ToWorker::Prepare {
            generation,
            bundle: Box::new((**bundle).clone()),
            listeners: self.sockets.keys().copied().collect(),
            slots: slots.to_vec(),
        }
    }

    /// Copies of the listening sockets for worker `id`, in address order: the shared ones,
    /// or with `TCPMAP_REUSEPORT=1` (a measurement knob, docs/architecture.md "Balance")
    /// worker `id`'s own `SO_REUSEPORT` socket of each address (worker 0 takes the shared one).
    pub(super) fn socket_fds(&mut self, id: u32) -> std::io::Result<Vec<OwnedFd>> {
        let mut out = Vec::with_capacity(self.sockets.len());
        for (addr, shared) in &self.sockets {
            if id == 0 || !crate::net::socket::reuseport() {
                out.push(shared.as_fd().try_clone_to_owned()?);
                continue;
            }
            let own = match self.own.get(&(*addr, id)) {
                Some(s) => s,
                None => {
                    let s = crate::net::socket::bind(*addr)?.into_inner()?;
                    self.own.entry((*addr, id)).or_insert(s)
                }
            };
            out.push(own.as_fd().try_clone_to_owned()?);
        }
        self.own
            .retain(|(addr, _), _| self.sockets.contains_key(addr));
        Ok(out)
    }

    /// The shared-counter slot of each mapping (new mappings get the next free one).
    fn slots_for(&mut self, mappings: &[MappingId]) -> Vec<Slot> {
        let mut out = Vec::new();
        for id in mappings {
            let next = self.slots.len() as u32 + 1;
            let index = match self.slots.get(id) {
                Some(i) => *i,
                None if (next as usize) < SLOTS => {
                    self.slots.insert(id.clone(), next);
                    next
                }
                None => {
                    tracing::warn!(mapping = %id.name, "no shared circuit-breaker slot left; counted per worker");
                    continue;
                }
            };
            out.push(Slot {
                name: id.name.clone(),
                namespace: id.namespace.clone(),
                port: id.port,
                host: id.host.clone(),
                index,
            });
        }
        out
    }
}
