//! Whether a store operation can run on the caller's own tokio runtime.
//!
//! A hit that is handed to cachemere's background runtime crosses threads twice (the command
//! out, the reply back), and on a virtual machine each crossing can cost more than the round
//! trip to Redis itself. So an `async fn` running on a multi-threaded tokio runtime with its
//! I/O and time drivers awaits the operation itself, on a connection driven by that runtime.
//!
//! Everything else keeps the background runtime: other executors; current-thread runtimes,
//! whose single thread may be blocked by the very code waiting for the answer (a nested
//! `block_on`), which would leave the connection's driver and the timeout's timer unpolled; and
//! runtimes built without the I/O or time driver, which a store connection and the timeout
//! need. The last is found by a probe, once per runtime.

use std::cell::Cell;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::{Handle, Id, RuntimeFlavor};

/// Probed runtimes remembered process-wide (runtime ids are never reused, so an entry of a
/// runtime that is gone is only a few dead bytes; the oldest go first).
const REMEMBERED: usize = 64;

static PROBED: Mutex<Vec<(Id, bool)>> = Mutex::new(Vec::new());

thread_local! {
    /// The last answer on this thread: worker threads belong to one runtime, so this is
    /// almost always the one asked about.
    static LAST: Cell<Option<(Id, bool)>> = const { Cell::new(None) };
}

/// Whether the current context is a tokio runtime that can run store operations itself.
pub(crate) async fn runs_here() -> bool {
    let Ok(handle) = Handle::try_current() else {
        return false;
    };
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        return false;
    }
    let id = handle.id();
    if let Some((last, usable)) = LAST.get()
        && last == id
    {
        return usable;
    }
    let known = PROBED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(probed, _)| *probed == id)
        .map(|(_, usable)| *usable);
    let usable = match known {
        Some(usable) => usable,
        None => {
            let usable = probe(&handle).await;
            let mut probed = PROBED.lock().unwrap_or_else(PoisonError::into_inner);
            if probed.len() >= REMEMBERED {
                probed.remove(0);
            }
            probed.push((id, usable));
            usable
        }
    };
    LAST.set(Some((id, usable)));
    usable
}

/// Runs, as a task of `handle`'s runtime, what a store connection and the timeout need: a
/// timer and a registered socket. Each panics when its driver is disabled, which the task's
/// `JoinError` reports (tokio prints that panic once, as for any task).
async fn probe(handle: &Handle) -> bool {
    let task = handle.spawn(async {
        drop(tokio::time::sleep(Duration::ZERO));
        // A bind that fails for another reason answers "no" too: the background runtime is
        // always correct, only slower.
        tokio::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .is_ok()
    });
    let usable = matches!(task.await, Ok(true));
    if !usable {
        tracing::debug!(
            "this tokio runtime lacks its I/O or time driver: remote cache operations run on \
             cachemere's background runtime"
        );
    }
    usable
}
