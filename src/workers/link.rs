//! One worker's control channel as the pool uses it: a plain thread owns the [`Channel`] and
//! carries one request and its reply at a time; the pool awaits the reply on a one-shot
//! channel, with a deadline. Once the stream breaks (the worker died), every later request is
//! answered with an error until the pool replaces the worker.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use super::channel::Channel;
use super::codec::{FromWorker, ToWorker};
use crate::rt::{self, Sender};

/// How long a worker may take to answer (building a big config included).
const ANSWER: Duration = Duration::from_secs(60);

/// A worker's control channel, driven by its own thread: one request, one reply.
#[derive(Clone)]
pub(super) struct Link {
    tx: Sender<Request>,
}

struct Request {
    msg: ToWorker,
    fds: Vec<OwnedFd>,
    respond_to: Sender<std::io::Result<FromWorker>>,
}

impl Link {
    pub(super) fn spawn(channel: Channel, id: u32) -> std::io::Result<Link> {
        let (tx, rx) = rt::mailbox::<Request>(16);
        std::thread::Builder::new()
            .name(format!("tcpmap-control-{id}"))
            .spawn(move || {
                let mut channel = channel;
                while let Ok(req) = rx.recv() {
                    let fds: Vec<_> = req.fds.iter().map(|f| f.as_fd()).collect();
                    let reply = channel
                        .send(&req.msg, &fds)
                        .and_then(|()| channel.recv_reply());
                    let broken = reply.is_err();
                    let _ = req.respond_to.send(reply);
                    if broken {
                        // The stream may be out of step now; answer every later request
                        // with an error until the worker is replaced.
                        while let Ok(req) = rx.recv() {
                            let _ = req
                                .respond_to
                                .send(Err(std::io::Error::other("worker gone")));
                        }
                    }
                }
            })?;
        Ok(Link { tx })
    }

    pub(super) async fn call(
        &self,
        msg: ToWorker,
        fds: Vec<OwnedFd>,
    ) -> std::io::Result<FromWorker> {
        let (respond_to, rx) = rt::oneshot();
        let req = Request {
            msg,
            fds,
            respond_to,
        };
        let gone = || std::io::Error::other("worker gone");
        self.tx.send_async(req).await.map_err(|_| gone())?;
        rt::timeout(ANSWER, rx.recv_async())
            .await
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "worker did not answer")
            })?
            .map_err(|_| gone())?
    }
}
