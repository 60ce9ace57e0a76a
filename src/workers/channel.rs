//! One end of a control channel: a unix stream socketpair carrying [`codec`] frames, with file
//! descriptors passed beside them as `SCM_RIGHTS`.
//!
//! Blocking on purpose: each end is driven by one plain thread (the Supervisor's per-worker
//! thread, the worker's control thread), one request and one reply at a time, so the
//! runtime's executor never waits on it.
//!
//! Descriptors are attached to the first bytes of the frame they belong to, so by the time a
//! frame is read whole its descriptors are queued; the receiver takes as many as the message
//! says it carries ([`Channel::take_fds`]).

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType, recvmsg, sendmsg,
};
use serde::{Serialize, de::DeserializeOwned};

use super::codec::{self, CodecError, FromWorker};

/// A frame decoder: the first message in the bytes and how many it took, or "need more".
type Decoder<T> = fn(&[u8]) -> Result<Option<(T, usize)>, CodecError>;

/// Descriptors per `sendmsg` (the kernel's limit is 253).
const FDS_PER_MESSAGE: usize = 64;

/// One end of a control channel.
#[derive(Debug)]
pub(crate) struct Channel {
    socket: OwnedFd,
    /// Bytes read but not yet decoded.
    buf: Vec<u8>,
    /// Descriptors received and not yet taken.
    fds: VecDeque<OwnedFd>,
}

/// A connected pair (both ends close on exec; the Supervisor clears the flag on the end it
/// hands to a worker, in the child only).
pub(crate) fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((Channel::new(a), Channel::new(b)))
}

impl Channel {
    /// Wraps a connected unix stream socket.
    pub(crate) fn new(socket: OwnedFd) -> Channel {
        Channel {
            socket,
            buf: Vec::new(),
            fds: VecDeque::new(),
        }
    }

    /// The socket (to hand to a child process).
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.socket
    }

    /// Sends `msg` with `fds` attached.
    pub(crate) fn send<T: Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        self.send_frame(&codec::encode(msg).map_err(io::Error::other)?, fds)
    }

    /// Sends a worker's reply (the binary frame for `Counts`, JSON for the others).
    pub(crate) fn send_reply(&self, reply: &FromWorker) -> io::Result<()> {
        self.send_frame(
            &super::status_wire::encode_reply(reply).map_err(io::Error::other)?,
            &[],
        )
    }

    fn send_frame(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let mut sent = 0;
        // Each batch of descriptors rides on one byte of the frame (a frame is always longer
        // than its number of batches: the body names each socket's address).
        for batch in fds.chunks(FDS_PER_MESSAGE) {
            let byte = frame
                .get(sent..sent + 1)
                .ok_or_else(|| io::Error::other("frame shorter than its descriptors"))?;
            let mut space =
                [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(batch)) {
                return Err(io::Error::other("descriptors do not fit"));
            }
            loop {
                match sendmsg(
                    &self.socket,
                    &[IoSlice::new(byte)],
                    &mut control,
                    SendFlags::NOSIGNAL,
                ) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => break,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            sent += 1;
        }
        while let Some(rest) = frame.get(sent..).filter(|r| !r.is_empty()) {
            match rustix::net::send(&self.socket, rest, SendFlags::NOSIGNAL) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Receives the next message (`UnexpectedEof` when the other end is gone).
    pub(crate) fn recv<T: DeserializeOwned>(&mut self) -> io::Result<T> {
        self.recv_with(codec::decode::<T>)
    }

    /// Receives a worker's reply (binary or JSON, `status_wire::decode_reply`).
    pub(crate) fn recv_reply(&mut self) -> io::Result<FromWorker> {
        self.recv_with(super::status_wire::decode_reply)
    }

    fn recv_with<T>(&mut self, decode: Decoder<T>) -> io::Result<T> {
        loop {
            match decode(&self.buf) {
                Ok(Some((msg, used))) => {
                    self.buf.drain(..used);
                    return Ok(msg);
                }
                Ok(None) => self.fill()?,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }

    /// The next `n` descriptors received (fewer is an error: the peer broke the protocol).
    pub(crate) fn take_fds(&mut self, n: usize) -> io::Result<Vec<OwnedFd>> {
        if self.fds.len() < n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected {n} descriptors, got {}", self.fds.len()),
            ));
        }
        Ok(self.fds.drain(..n).collect())
    }

    /// Reads once more from the socket, keeping any descriptors that came with the bytes.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let n = loop {
            match recvmsg(
                &self.socket,
                &mut [IoSliceMut::new(&mut chunk)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(r) => break r.bytes,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = msg {
                self.fds.extend(fds);
            }
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf
            .extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::workers::codec::FromWorker;
    use std::os::fd::{AsFd, AsRawFd};

    #[test]
    fn messages_and_descriptors_arrive_in_order() {
        let (a, mut b) = pair().unwrap();
        let files: Vec<std::fs::File> = (0..70).map(|_| tempfile_fd()).collect();
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        let long = FromWorker::Failed {
            error: None,
            message: "x".repeat(200_000),
        };
        std::thread::scope(|scope| {
            scope.spawn(|| {
                a.send(&long, &fds[..67]).unwrap();
                a.send(&FromWorker::Ready, &fds[67..]).unwrap();
            });
            let first: FromWorker = b.recv().unwrap();
            assert!(
                matches!(first, FromWorker::Failed { message, .. } if message.len() == 200_000)
            );
            assert_eq!(b.take_fds(67).unwrap().len(), 67);
            assert_eq!(b.recv::<FromWorker>().unwrap(), FromWorker::Ready);
            let last = b.take_fds(3).unwrap();
            assert!(last.iter().all(|f| f.as_raw_fd() >= 0));
        });
        drop(a);
        assert_eq!(
            b.recv::<FromWorker>().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert!(b.take_fds(1).is_err());
    }

    fn tempfile_fd() -> std::fs::File {
        tempfile::tempfile().unwrap()
    }
}
