//! A gate for deterministic race tests: a computation that, once armed, reports that it has
//! read its data and waits for a go before returning.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, PoisonError};

/// Armed by the test, passed by the computation (once per arming).
pub struct Gate(Mutex<Option<(Sender<()>, Receiver<()>)>>);

impl Gate {
    /// A gate that lets everything through until armed.
    pub const fn new() -> Self {
        Gate(Mutex::new(None))
    }

    /// Arms the gate for the next computation; returns (started, go): `started` receives
    /// when it has read its data, and it returns once `go` is sent.
    pub fn arm(&self) -> (Receiver<()>, Sender<()>) {
        let (started_tx, started_rx) = channel();
        let (go_tx, go_rx) = channel();
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((started_tx, go_rx));
        (started_rx, go_tx)
    }

    /// Called by the computation after reading its data.
    pub fn pass(&self) {
        let armed = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((started, go)) = armed {
            let _ = started.send(());
            let _ = go.recv();
        }
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}
