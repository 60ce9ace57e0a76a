//! The reactor's OS layer on raw epoll (rustix): an epoll set and an eventfd to wake its
//! driver.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll::{self, EventData, EventFlags};

use super::Ready;

/// The event key of the wake-up eventfd.
const NOTIFY_KEY: u64 = u64::MAX;

/// Events taken per `epoll_wait`.
const EVENT_BATCH: usize = 256;

/// What a socket is registered for.
#[derive(Debug, Clone, Copy)]
pub(in crate::rt) enum Kind {
    /// Read, write, FIN, urgent data.
    Stream,
    /// Read only (a listening socket).
    Listener,
}

thread_local! {
    /// The event buffer of the thread that drives the reactor (`epoll::Event` is not `Send`).
    static EVENTS: std::cell::RefCell<Vec<epoll::Event>> =
        std::cell::RefCell::new(Vec::with_capacity(EVENT_BATCH));
}

/// One turn's events: in the driving thread's [`EVENTS`].
#[derive(Default)]
pub(super) struct Events;

pub(super) struct Poller {
    epoll: OwnedFd,
    notify: OwnedFd,
}

impl Poller {
    pub(super) fn new() -> io::Result<Poller> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let notify = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        epoll::add(
            &epoll,
            &notify,
            EventData::new_u64(NOTIFY_KEY),
            EventFlags::IN | EventFlags::ET,
        )?;
        Ok(Poller { epoll, notify })
    }

    pub(super) fn add(&self, fd: BorrowedFd<'_>, key: u64, kind: Kind) -> io::Result<()> {
        let flags = match kind {
            Kind::Stream => {
                EventFlags::IN
                    | EventFlags::OUT
                    | EventFlags::RDHUP
                    | EventFlags::PRI
                    | EventFlags::ET
            }
            Kind::Listener => EventFlags::IN | EventFlags::ET,
        };
        Ok(epoll::add(&self.epoll, fd, EventData::new_u64(key), flags)?)
    }

    pub(super) fn delete(&self, fd: BorrowedFd<'_>) {
        let _ = epoll::delete(&self.epoll, fd);
    }

    pub(super) fn notify(&self) {
        let _ = rustix::io::write(&self.notify, &1u64.to_ne_bytes());
    }

    pub(super) fn wait(&self, _: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        EVENTS.with_borrow_mut(|events| self.wait_into(events, timeout))
    }

    fn wait_into(
        &self,
        events: &mut Vec<epoll::Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        events.clear();
        events.reserve(EVENT_BATCH);
        // Whole milliseconds, rounded up: a wait that ends early costs a turn for nothing.
        let spec = timeout.map(|t| {
            let ms = t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i64;
            rustix::event::Timespec {
                tv_sec: ms / 1000,
                tv_nsec: (ms % 1000) * 1_000_000,
            }
        });
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(events),
            spec.as_ref(),
        ) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        if events.iter().any(|e| e.data.u64() == NOTIFY_KEY) {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(&self.notify, &mut buf);
        }
        Ok(())
    }
}

/// Calls `f` with each socket event's key and readiness (the wake-up's excluded).
pub(super) fn each(_: &Events, mut f: impl FnMut(u64, Ready)) {
    EVENTS.with_borrow(|events| {
        for event in events.iter() {
            let key = event.data.u64();
            if key == NOTIFY_KEY {
                continue;
            }
            let flags = event.flags;
            f(
                key,
                Ready {
                    read: flags.contains(EventFlags::IN),
                    write: flags.contains(EventFlags::OUT),
                    rdhup: flags.contains(EventFlags::RDHUP),
                    hup: flags.contains(EventFlags::HUP),
                    error: flags.contains(EventFlags::ERR),
                    pri: flags.contains(EventFlags::PRI),
                },
            );
        }
    });
}
