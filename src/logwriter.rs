//! The daemon's log writer: stderr, buffered, so the access log costs no `write(2)` per
//! connection.
//!
//! Every line goes into one in-memory buffer (lines stay whole and in order). A flusher
//! thread writes the buffer out at most [`FLUSH_INTERVAL`] after its first line arrived;
//! a line at WARN or ERROR, or a buffer past [`FLUSH_AT`] bytes, is written out at once by the
//! thread that logged it. [`LogWriter::flush`] writes whatever is left: `main` calls it when
//! `tcpmap run` returns (after the drain), so no line is lost at exit. A process killed by
//! SIGKILL loses at most the last 100 ms of info/debug lines. Must not: format lines (the
//! tracing subscriber does), or block the logging thread on stderr for info lines.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long an info line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A buffer this full is written out by the thread that filled it.
pub const FLUSH_AT: usize = 64 * 1024;

/// A cloneable handle to the buffer; give one to the tracing subscriber, keep one to flush.
#[derive(Debug, Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    buf: Mutex<Vec<u8>>,
    /// Signalled when the buffer gets its first line.
    filled: Condvar,
    /// No flusher thread could be started: every line is written at once.
    unbuffered: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A thread that panicked while appending left whole bytes behind: keep going.
        self.buf.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Writes out and empties the buffer (the lock is held, so lines stay in order).
    fn write_out(buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        // stderr gone (closed pipe): nothing useful to do with the lines.
        let _ = std::io::stderr().lock().write_all(buf);
        buf.clear();
    }
}

impl LogWriter {
    /// A writer with its flusher thread running. If the thread cannot be started, every
    /// line is written at once instead.
    pub fn stderr() -> LogWriter {
        let shared = Arc::new(Shared::default());
        let flusher = Arc::clone(&shared);
        let started = std::thread::Builder::new()
            .name("tcpmap-log".into())
            .spawn(move || flush_loop(&flusher));
        if started.is_err() {
            shared.unbuffered.store(true, Ordering::Relaxed);
        }
        LogWriter { shared }
    }

    /// Writes out every buffered line now.
    pub fn flush(&self) {
        Shared::write_out(&mut self.shared.lock());
    }
}

fn flush_loop(shared: &Shared) {
    loop {
        {
            let mut buf = shared.lock();
            while buf.is_empty() {
                buf = shared
                    .filled
                    .wait(buf)
                    .unwrap_or_else(|poison| poison.into_inner());
            }
        }
        // Let a batch gather, then write it in one go.
        std::thread::sleep(FLUSH_INTERVAL);
        Shared::write_out(&mut shared.lock());
    }
}

/// One event's writer: appends to the buffer; an urgent one flushes when dropped.
#[derive(Debug)]
pub struct LineWriter<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.shared.lock();
        let was_empty = buf.is_empty();
        buf.extend_from_slice(bytes);
        if self.urgent || buf.len() >= FLUSH_AT {
            Shared::write_out(&mut buf);
        } else if was_empty {
            self.shared.filled.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            urgent: self.shared.unbuffered.load(Ordering::Relaxed),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            urgent: *meta.level() <= tracing::Level::WARN
                || self.shared.unbuffered.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_in_the_buffer_until_a_flush() {
        let w = LogWriter {
            shared: Arc::new(Shared::default()),
        };
        let mut line = w.make_writer();
        line.urgent = false;
        line.write_all(b"one\n").unwrap();
        line.write_all(b"two\n").unwrap();
        assert_eq!(&*w.shared.lock(), b"one\ntwo\n");
        w.flush();
        assert!(w.shared.lock().is_empty());
    }

    #[test]
    fn urgent_lines_and_a_full_buffer_go_out_at_once() {
        let w = LogWriter {
            shared: Arc::new(Shared::default()),
        };
        let mut urgent = LineWriter {
            shared: &w.shared,
            urgent: true,
        };
        urgent.write_all(b"warn\n").unwrap();
        assert!(w.shared.lock().is_empty());
        let mut info = LineWriter {
            shared: &w.shared,
            urgent: false,
        };
        info.write_all(&vec![b'x'; FLUSH_AT]).unwrap();
        assert!(w.shared.lock().is_empty());
    }
}
