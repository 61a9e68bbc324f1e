//! Logs to stderr that can never stop the server.
//!
//! Two ways a log line used to hang `serve`:
//! - stderr is a closed pipe (`tributary serve 2>&1 | head -3`): the fmt
//!   layer reports its failed write with `eprintln!`, which panics on the
//!   same closed pipe. When the task that panics is the signal handler, the
//!   shutdown token is never cancelled and SIGINT/SIGTERM are swallowed.
//! - stderr is a pipe nobody reads: each write blocks once the pipe is full,
//!   and so does whatever task logged.
//!
//! So events are formatted on the caller's thread, queued in a bounded
//! channel, and written by one thread of their own. A full queue drops the
//! line (and counts it); a write error is ignored. At exit the queue gets a
//! short grace period to drain, never more.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Lines that may wait for the writer thread before new ones are dropped.
const QUEUE_LINES: usize = 8192;
/// How long exit waits for queued lines to be written.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// The queue and its bookkeeping, shared by every writer handle.
#[derive(Debug)]
struct Shared {
    queued: AtomicU64,
    dropped: AtomicU64,
}

/// A [`MakeWriter`] whose writes never block and never fail.
#[derive(Debug, Clone)]
pub struct StderrQueue {
    tx: SyncSender<Vec<u8>>,
    shared: Arc<Shared>,
}

/// Waits briefly for queued lines when dropped at exit.
#[derive(Debug)]
pub struct DrainOnDrop(Arc<Shared>);

impl StderrQueue {
    /// Starts the writer thread. Keep the guard alive until exit.
    pub fn start() -> (Self, DrainOnDrop) {
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let shared = Arc::new(Shared { queued: AtomicU64::new(0), dropped: AtomicU64::new(0) });
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("tributary-log".to_owned())
            .spawn(move || write_lines(&rx, &thread_shared));
        if spawned.is_err() {
            // Without a writer thread every line is dropped, never blocked on.
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        let queue = Self { tx, shared: shared.clone() };
        let _ = QUEUE.set(queue.clone());
        (queue, DrainOnDrop(shared))
    }

    /// Whether stderr is a terminal, where colours are wanted.
    pub fn is_terminal() -> bool {
        std::io::stderr().is_terminal()
    }
}

fn write_lines(rx: &Receiver<Vec<u8>>, shared: &Shared) {
    let mut stderr = std::io::stderr();
    for line in rx {
        let lost = shared.dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(stderr, "[tributary] {lost} log lines dropped: stderr was not being read");
        }
        let _ = stderr.write_all(&line);
        shared.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let deadline = Instant::now() + DRAIN_GRACE;
        while self.0.queued.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One event's bytes, queued when the fmt layer drops it.
#[derive(Debug)]
pub struct Line {
    buf: Vec<u8>,
    queue: StderrQueue,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let shared = &self.queue.shared;
        shared.queued.fetch_add(1, Ordering::Relaxed);
        match self.queue.tx.try_send(std::mem::take(&mut self.buf)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                shared.queued.fetch_sub(1, Ordering::Relaxed);
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for StderrQueue {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { buf: Vec::with_capacity(256), queue: self.clone() }
    }
}

/// The queue once logging is set up, for [`say`].
static QUEUE: OnceLock<StderrQueue> = OnceLock::new();

/// Prints a line for the user on stderr, through the log queue once there is
/// one: `eprintln!` panics on a closed stderr and blocks on a full one.
pub fn say(line: std::fmt::Arguments<'_>) {
    match QUEUE.get() {
        Some(queue) => {
            let mut out = queue.make_writer();
            let _ = writeln!(out, "{line}");
        }
        None => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_lines_instead_of_blocking() {
        let (tx, _rx) = sync_channel(1);
        let shared = Arc::new(Shared { queued: AtomicU64::new(0), dropped: AtomicU64::new(0) });
        let queue = StderrQueue { tx, shared: shared.clone() };
        for _ in 0..3 {
            let mut line = queue.make_writer();
            line.write_all(b"event\n").unwrap();
        }
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(shared.queued.load(Ordering::Relaxed), 1);
    }
}
