//! The daemon's log writer: stderr, with the access log buffered, so it costs no `write(2)` per
//! connection.
//!
//! Every line goes into one in-memory buffer (lines stay whole and in order). Access lines
//! (target `tcpmap::access`) wait there: a flusher thread writes the buffer out at most
//! [`FLUSH_INTERVAL`] after its first line arrived. Any other line, or a buffer past
//! [`FLUSH_AT`] bytes, is written out at once (with what waited before it) by the thread that
//! logged it, so the Supervisor's and the workers' lines reach stderr in the order they happened.
//!
//! In a worker process ([`tag_worker`]) every line carries the worker's number: ` worker=N` at
//! the end of a text line, `"worker":N` first in a JSON object. [`LogWriter::flush`] writes whatever is left: `main` calls it when
//! `tcpmap run` returns (after the drain), so no line is lost at exit. A process killed by
//! SIGKILL loses at most the last 100 ms of info/debug lines. Must not: format lines (the
//! tracing subscriber does), or block the logging thread on stderr for info lines.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long an info line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A buffer this full is written out by the thread that filled it.
pub const FLUSH_AT: usize = 64 * 1024;

/// The access log's tracing target: its lines are the only ones that wait in the buffer.
pub const ACCESS_TARGET: &str = "tcpmap::access";

/// This process's worker number plus one (0: not a worker). Set once, when the worker learns it.
static WORKER: AtomicU32 = AtomicU32::new(0);

/// Marks this process as worker `id`: from now on every line it logs names it.
pub fn tag_worker(id: u32) {
    WORKER.store(id.saturating_add(1), Ordering::Relaxed);
}

fn worker() -> Option<u32> {
    WORKER.load(Ordering::Relaxed).checked_sub(1)
}

/// How lines are formatted, so the worker tag goes where the format keeps fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineFormat {
    /// tracing-subscriber's text lines: the tag is appended as ` worker=N`.
    #[default]
    Text,
    /// One JSON object a line: the tag is the object's first key.
    Json,
}

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
    format: LineFormat,
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
    pub fn stderr(format: LineFormat) -> LogWriter {
        let shared = Arc::new(Shared {
            format,
            ..Shared::default()
        });
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

/// Appends one formatted line to `buf`, tagged with the worker's number when there is one.
/// The subscriber hands over each event whole (it formats into its own buffer first).
fn append(buf: &mut Vec<u8>, line: &[u8], format: LineFormat, worker: Option<u32>) {
    let Some(id) = worker else {
        buf.extend_from_slice(line);
        return;
    };
    match format {
        LineFormat::Json if line.starts_with(b"{") => {
            buf.extend_from_slice(format!("{{\"worker\":{id},").as_bytes());
            let rest = line.strip_prefix(b"{").unwrap_or(line);
            // `{}` would become `{"worker":N,}`: close the object instead.
            match rest.strip_prefix(b"}") {
                Some(tail) => {
                    buf.truncate(buf.len() - 1);
                    buf.push(b'}');
                    buf.extend_from_slice(tail);
                }
                None => buf.extend_from_slice(rest),
            }
        }
        _ => {
            let (body, end) = match line.strip_suffix(b"\n") {
                Some(body) => (body, &b"\n"[..]),
                None => (line, &b""[..]),
            };
            buf.extend_from_slice(body);
            buf.extend_from_slice(format!(" worker={id}").as_bytes());
            buf.extend_from_slice(end);
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.shared.lock();
        let was_empty = buf.is_empty();
        append(&mut buf, bytes, self.shared.format, worker());
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
            urgent: meta.target() != ACCESS_TARGET
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

    #[test]
    fn only_access_lines_wait() {
        let w = LogWriter {
            shared: Arc::new(Shared::default()),
        };
        let access = tracing::Metadata::new(
            "access",
            ACCESS_TARGET,
            tracing::Level::INFO,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CALLSITE)),
            tracing::metadata::Kind::EVENT,
        );
        assert!(!w.make_writer_for(&access).urgent);
        let other = tracing::Metadata::new(
            "applied",
            "tcpmap::actors::supervisor",
            tracing::Level::INFO,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CALLSITE)),
            tracing::metadata::Kind::EVENT,
        );
        assert!(w.make_writer_for(&other).urgent);
    }

    struct NoCallsite;
    impl tracing::callsite::Callsite for NoCallsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unreachable!("only its identity is used")
        }
    }
    static CALLSITE: NoCallsite = NoCallsite;

    fn tagged(line: &str, format: LineFormat, worker: Option<u32>) -> String {
        let mut buf = Vec::new();
        append(&mut buf, line.as_bytes(), format, worker);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn worker_lines_name_the_worker() {
        let text = "2026-12-06T08:00:00Z  INFO tcpmap: config applied generation=1\n";
        assert_eq!(tagged(text, LineFormat::Text, None), text);
        assert_eq!(
            tagged(text, LineFormat::Text, Some(2)),
            "2026-12-06T08:00:00Z  INFO tcpmap: config applied generation=1 worker=2\n"
        );
        let json = "{\"level\":\"INFO\",\"message\":\"drained\"}\n";
        let out = tagged(json, LineFormat::Json, Some(0));
        assert_eq!(
            out,
            "{\"worker\":0,\"level\":\"INFO\",\"message\":\"drained\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["worker"], 0);
        assert_eq!(
            tagged("{}\n", LineFormat::Json, Some(1)),
            "{\"worker\":1}\n"
        );
    }
}
