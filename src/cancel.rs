//! A cancellation flag shared between the daemon's signal handler and a running backup. Long
//! stages poll it (SQLite through its progress handler, the compressor through its reader), so
//! an abort after the shutdown grace period stops promptly and cleans up like any failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A reader that fails with `Interrupted`-free error once cancelled, so streaming stops.
pub struct CancellableReader<R> {
    inner: R,
    cancel: Cancel,
}

impl<R> CancellableReader<R> {
    pub fn new(inner: R, cancel: Cancel) -> Self {
        CancellableReader { inner, cancel }
    }
}

/// The error a cancelled stream reports; [`is_cancelled_error`] recognises it.
pub fn cancelled_error() -> std::io::Error {
    std::io::Error::other("snapkeep: run aborted")
}

pub fn is_cancelled_error(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string() == "snapkeep: run aborted"
}

impl<R: std::io::Read> std::io::Read for CancellableReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(cancelled_error());
        }
        self.inner.read(buf)
    }
}
