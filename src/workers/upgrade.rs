//! Hot binary upgrade (`SIGUSR2`): the running Supervisor starts the binary found at its own
//! path again, with the same arguments, and hands it every listening socket and the admin
//! socket over a control channel (its standard input, `TCPMAP_UPGRADE=1`). The new one starts
//! serving on them — its workers accept from the same queues as the old ones — and answers
//! `Ready`; only then does the old one drain its workers and exit 0. The ports never close, so
//! no connection is refused. If the new binary fails to start, the old one keeps serving.
//!
//! The handover also carries the session-ticket keys (current and previous, with their ages),
//! so tickets issued before the upgrade resume after it and the rotation keeps its schedule.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::channel::{self, Channel};
use super::codec::Upgrade;
use crate::state::ticket_keys::TicketKeys;

/// The environment variable that tells a new binary it is taking over.
const ENV: &str = "TCPMAP_UPGRADE";

/// What a new binary was handed.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    /// Listening sockets by address.
    pub(crate) listeners: HashMap<SocketAddr, TcpListener>,
    /// The admin endpoint's socket.
    pub(crate) admin: Option<TcpListener>,
}

/// In a new binary started by an upgrade: the sockets it was handed and the channel to
/// answer on. `None` when this process was started normally.
pub(crate) fn receive() -> std::io::Result<Option<(Channel, Inherited)>> {
    if std::env::var_os(ENV).is_none_or(|v| v != "1") {
        return Ok(None);
    }
    let mut channel = Channel::new(std::io::stdin().as_fd().try_clone_to_owned()?);
    let Upgrade::Handover {
        listeners,
        admin,
        tickets,
    } = channel.recv()?
    else {
        return Err(std::io::Error::other(
            "the upgrade did not start with Handover",
        ));
    };
    let fds = channel.take_fds(listeners.len())?;
    let mut inherited = Inherited {
        listeners: listeners
            .into_iter()
            .zip(fds)
            .map(|(a, fd)| (a, TcpListener::from(fd)))
            .collect(),
        admin: None,
    };
    if admin {
        inherited.admin = channel.take_fds(1)?.pop().map(TcpListener::from);
    }
    // Before any TLS context is built, so every one seals and opens with them.
    match tickets.map(crate::state::tickets::adopt) {
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot take over the session-ticket keys; tickets from before the upgrade will not resume")
        }
        Some(Ok(())) => {}
        None => tracing::info!(
            "the old binary handed over no session-ticket keys; tickets from before the upgrade will not resume"
        ),
    }
    Ok(Some((channel, inherited)))
}

/// Tells the old Supervisor this one serves.
pub(crate) fn ready(channel: &Channel) -> std::io::Result<()> {
    channel.send(
        &Upgrade::Ready {
            pid: std::process::id(),
        },
        &[],
    )
}

/// Starts `exe` with `args`, hands it the sockets and the ticket keys and waits until it
/// serves; its pid. Blocking: call it from a blocking thread.
pub(crate) fn start_new(
    exe: &PathBuf,
    args: &[std::ffi::OsString],
    listeners: Vec<(SocketAddr, TcpListener)>,
    admin: Option<TcpListener>,
    tickets: Option<TicketKeys>,
) -> std::io::Result<u32> {
    let (mut ours, theirs) = channel::pair()?;
    let mut child = Command::new(exe)
        .args(args)
        .env(ENV, "1")
        .stdin(Stdio::from(theirs.into_fd()))
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()?;
    let msg = Upgrade::Handover {
        listeners: listeners.iter().map(|(a, _)| *a).collect(),
        admin: admin.is_some(),
        tickets,
    };
    let mut fds: Vec<OwnedFd> = listeners
        .into_iter()
        .map(|(_, s)| OwnedFd::from(s))
        .collect();
    fds.extend(admin.map(OwnedFd::from));
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    ours.send(&msg, &borrowed)?;
    drop(borrowed);
    drop(fds);
    match ours.recv::<Upgrade>() {
        Ok(Upgrade::Ready { pid }) => {
            // Reap it in the background once it exits (it outlives us normally).
            std::thread::spawn(move || child.wait());
            Ok(pid)
        }
        Ok(other) => Err(std::io::Error::other(format!(
            "unexpected answer {other:?}"
        ))),
        Err(e) => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            Err(std::io::Error::other(format!(
                "the new binary did not start ({e}; {status})"
            )))
        }
    }
}
