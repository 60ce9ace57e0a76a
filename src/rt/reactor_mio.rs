//! The reactor's OS layer on mio (feature `mio-reactor`): a `Poll`, its `Registry` and a
//! `Waker` (issue 20's measurement against the raw epoll layer).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Mutex;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{Ready, lock};

/// The event key of the waker.
const NOTIFY: Token = Token(usize::MAX);

/// Events taken per poll.
const EVENT_BATCH: usize = 256;

/// What a socket is registered for.
#[derive(Debug, Clone, Copy)]
pub(in crate::rt) enum Kind {
    /// Read, write, FIN, urgent data.
    Stream,
    /// Read only (a listening socket).
    Listener,
}

/// One turn's events.
pub(super) struct Events(mio::Events);

impl Default for Events {
    fn default() -> Events {
        Events(mio::Events::with_capacity(EVENT_BATCH))
    }
}

pub(super) struct Poller {
    /// Only the driver polls (under the reactor's turn lock); this lock is never contended.
    poll: Mutex<mio::Poll>,
    registry: mio::Registry,
    waker: mio::Waker,
}

impl Poller {
    pub(super) fn new() -> io::Result<Poller> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), NOTIFY)?;
        Ok(Poller {
            poll: Mutex::new(poll),
            registry,
            waker,
        })
    }

    pub(super) fn add(&self, fd: BorrowedFd<'_>, key: u64, kind: Kind) -> io::Result<()> {
        let interest = match kind {
            Kind::Stream => Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY,
            Kind::Listener => Interest::READABLE,
        };
        let raw = fd.as_raw_fd();
        self.registry
            .register(&mut SourceFd(&raw), Token(key as usize), interest)
    }

    pub(super) fn delete(&self, fd: BorrowedFd<'_>) {
        let raw = fd.as_raw_fd();
        let _ = self.registry.deregister(&mut SourceFd(&raw));
    }

    pub(super) fn notify(&self) {
        let _ = self.waker.wake();
    }

    pub(super) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        match lock(&self.poll).poll(&mut events.0, timeout) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e),
            _ => Ok(()),
        }
    }
}

/// Calls `f` with each socket event's key and readiness (the waker's excluded).
pub(super) fn each(events: &Events, mut f: impl FnMut(u64, Ready)) {
    for event in events.0.iter() {
        if event.token() == NOTIFY {
            continue;
        }
        let (read_closed, write_closed) = (event.is_read_closed(), event.is_write_closed());
        f(
            event.token().0 as u64,
            Ready {
                read: event.is_readable(),
                write: event.is_writable(),
                rdhup: read_closed,
                hup: read_closed && write_closed,
                error: event.is_error(),
                pri: event.is_priority(),
            },
        );
    }
}
