//! A cancellation flag shared between the daemon's signal handler and a running backup. Long
//! stages poll it (SQLite through its progress handler, the compressor through its reader), so
//! an abort after the shutdown grace period stops promptly and cleans up like any failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    parent: Option<Arc<Cancel>>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }
    /// A flag that is also cancelled when `self` is, but can be cancelled on its own: one
    /// stage of a run stopping its sibling (a failed integrity check stops the compressor).
    pub fn child(&self) -> Cancel {
        Cancel {
            flag: Arc::default(),
            parent: Some(Arc::new(self.clone())),
        }
    }
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst) || self.parent.as_ref().is_some_and(|p| p.is_cancelled())
    }
}

/// A reader that fails once cancelled, so a streaming stage stops at its next read.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_sees_its_parent_but_not_the_other_way_round() {
        let parent = Cancel::new();
        let (a, b) = (parent.child(), parent.child());
        a.cancel();
        assert!(a.is_cancelled() && !b.is_cancelled() && !parent.is_cancelled());
        parent.cancel();
        assert!(b.is_cancelled());
    }
}
