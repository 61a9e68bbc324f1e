//! Whether each source can do its work, and why not.
//!
//! A source that cannot reach its broker used to look healthy: the process
//! stayed up, `/healthz` said `ok`, and the cause ("connection refused")
//! showed only at shutdown. Every source now reports here when it fails and
//! when it recovers; `/readyz` serves the states with their reasons, and the
//! same call emits the metric and the log line, so the three never disagree.
//!
//! A failure that repeats is logged on its 1st, 2nd, 4th, 8th… occurrence
//! (and counted every time), so an outage is visible at once without a line
//! per retry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tributary_core::metrics as m;

/// One component's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Whether it is working.
    pub ready: bool,
    /// The last error while not ready, or what it waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Errors since it was last ready.
    pub errors: u64,
}

/// The states of every source, shared by the sources and the server.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<String, Status>>>);

impl Health {
    /// Registers `component` as not ready yet, waiting for `what`.
    pub fn starting(&self, component: &str, what: &str) {
        self.set(component, Status { ready: false, reason: Some(what.to_owned()), errors: 0 });
        metrics::gauge!(m::SOURCE_UP, "source" => component.to_owned()).set(0.0);
    }

    /// `component` works (again).
    pub fn up(&self, component: &str) {
        let was = self.set(component, Status { ready: true, reason: None, errors: 0 });
        if was.is_some_and(|s| !s.ready) {
            tracing::info!(source = %component, "source is ready");
        }
        metrics::gauge!(m::SOURCE_UP, "source" => component.to_owned()).set(1.0);
    }

    /// `component` failed with `reason`.
    pub fn down(&self, component: &str, reason: &str) {
        let errors = self.read(component).map_or(0, |s| s.errors) + 1;
        self.set(component, Status { ready: false, reason: Some(reason.to_owned()), errors });
        metrics::gauge!(m::SOURCE_UP, "source" => component.to_owned()).set(0.0);
        metrics::counter!(m::SOURCE_ERRORS, "source" => component.to_owned()).increment(1);
        if errors.is_power_of_two() {
            tracing::warn!(source = %component, errors, error = %reason, "source is not ready");
        }
    }

    /// Every component's state, by name.
    pub fn snapshot(&self) -> BTreeMap<String, Status> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn read(&self, component: &str) -> Option<Status> {
        self.0.lock().ok()?.get(component).cloned()
    }

    fn set(&self, component: &str, status: Status) -> Option<Status> {
        self.0.lock().ok()?.insert(component.to_owned(), status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_down_with_its_last_error_until_it_recovers() {
        let h = Health::default();
        h.starting("kafka:orders", "waiting for the broker");
        assert!(!h.snapshot()["kafka:orders"].ready);
        h.down("kafka:orders", "connection refused");
        h.down("kafka:orders", "connection refused again");
        let s = &h.snapshot()["kafka:orders"];
        assert_eq!((s.ready, s.reason.as_deref(), s.errors), (false, Some("connection refused again"), 2));
        h.up("kafka:orders");
        assert_eq!(h.snapshot()["kafka:orders"], Status { ready: true, reason: None, errors: 0 });
    }
}
