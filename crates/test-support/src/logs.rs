//! Capturing `tracing` output in memory, to check what logs contain (and
//! what they must never contain).

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

/// An in-memory log: a [`MakeWriter`] for `tracing_subscriber::fmt` that
/// appends every line to a shared buffer.
///
/// [`set_default`](Self::set_default) makes it the current thread's
/// subscriber, at TRACE level, until the guard drops. Only events emitted
/// on that thread are captured, so capture from a current-thread runtime:
/// then every task of the test, the library's included, runs there, and
/// tests running in parallel on other threads do not mix in.
///
/// ```
/// use watchtower_test_support::LogCapture;
///
/// let logs = LogCapture::new();
/// {
///     let _guard = logs.set_default();
///     tracing::info!(user = "alice", "hello");
/// }
/// assert!(logs.contents().contains("hello"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl LogCapture {
    /// An empty capture.
    pub fn new() -> LogCapture {
        LogCapture::default()
    }

    /// Captures every event (TRACE and up, with span fields) emitted on
    /// this thread until the returned guard drops.
    #[must_use = "capturing stops when the guard drops"]
    pub fn set_default(&self) -> DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(self.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Everything captured so far.
    pub fn contents(&self) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

/// Appends to a [`LogCapture`]'s buffer.
#[derive(Debug)]
pub struct CaptureWriter {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter {
            buffer: Arc::clone(&self.buffer),
        }
    }
}
