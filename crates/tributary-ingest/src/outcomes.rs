//! What became of each record, counted in one place for every source (the
//! table pipeline, as it answers each chunk), so that metric names and
//! labels cannot drift between sources.
//!
//! The handles are registered once per table, not per landing: a label set
//! is looked up when it is registered. They reconcile like a receipt:
//! `received = written + quarantined + deduplicated`. Replayable input is
//! counted when it lands, so a chunk dropped as a zombie and read again is
//! counted once (the Kafka source counts every read, re-reads included, as
//! `tributary_kafka_records_total`).

use metrics::Counter;
use tributary_core::TableName;
use tributary_core::metrics as m;

use crate::prepare::Reject;

/// The outcome metrics of one table, shared by its sources.
#[derive(Debug, Clone)]
pub struct Outcomes {
    table: String,
    received: Counter,
    written: Counter,
    deduplicated: Counter,
}

impl Outcomes {
    /// Registers the handles of `table`.
    pub fn new(table: &TableName) -> Self {
        let table = table.to_string();
        Self {
            received: metrics::counter!(m::RECORDS_RECEIVED, "table" => table.clone()),
            written: metrics::counter!(m::RECORDS_WRITTEN, "table" => table.clone()),
            deduplicated: metrics::counter!(m::RECORDS_DEDUPLICATED, "table" => table.clone()),
            table,
        }
    }

    /// Records a chunk brought.
    pub fn received(&self, n: usize) {
        self.received.increment(n as u64);
    }

    /// Rows committed to the table.
    pub fn written(&self, n: usize) {
        self.written.increment(n as u64);
    }

    /// Records dropped as duplicates.
    pub fn deduplicated(&self, n: usize) {
        self.deduplicated.increment(n as u64);
    }

    /// Rejects committed to the quarantine table, by reason.
    pub fn quarantined(&self, rejects: &[Reject]) {
        for r in rejects {
            metrics::counter!(m::RECORDS_QUARANTINED, "table" => self.table.clone(), "reason" => r.rejection.kind)
                .increment(1);
        }
    }

    /// How far the newest committed event time lags `now_us`. Registered
    /// on first use: a table that never had an event time has no freshness,
    /// rather than a misleading 0.
    pub fn fresh(&self, max_event_us: Option<i64>, now_us: i64) {
        if let Some(t) = max_event_us {
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!(m::FRESHNESS, "table" => self.table.clone()).set((now_us - t) as f64 / 1e6);
        }
    }
}
