//! The process-wide Prometheus recorder.
//!
//! `metrics` has one global recorder per process; installing it lazily once
//! lets several servers (tests, the quickstart) share it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tributary_core::metrics as m;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The recorder's handle, installing it on first use. `None` if another
/// recorder was installed by the embedding program.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(m::COMMIT_LATENCY.to_owned()), &buckets)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Describes every metric so the exposition carries HELP lines.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(m::RECORDS_RECEIVED, "Records received by any source");
    describe_counter!(m::RECORDS_WRITTEN, "Records committed to their target table");
    describe_counter!(m::RECORDS_QUARANTINED, "Records committed to the quarantine table, by reason");
    describe_counter!(m::RECORDS_DEDUPLICATED, "Records dropped as duplicates of the dedup key");
    describe_counter!(m::COMMITS, "Snapshots committed");
    describe_counter!(m::COMMIT_CONFLICTS, "Commits that lost the catalog compare-and-swap, by outcome");
    describe_histogram!(m::COMMIT_LATENCY, Unit::Seconds, "Time from data-file write start to catalog swap");
    describe_gauge!(m::CURRENT_SNAPSHOT, "Id of the table's current snapshot");
    describe_gauge!(m::DEDUP_KEYS, "Keys the table's dedup index holds, in memory and on disk");
    describe_gauge!(m::DEDUP_MEMORY, Unit::Bytes, "Memory the table's dedup index takes");
    describe_gauge!(m::DEDUP_DISK, Unit::Bytes, "Bytes of the dedup index's runs on local disk");
    describe_counter!(m::BYTES_WRITTEN, Unit::Bytes, "Parquet bytes written");
    describe_counter!(m::QUERIES, "SQL queries served, by outcome");
    describe_counter!(m::KAFKA_RECORDS, "Records read from Kafka, by pipeline");
    describe_gauge!(m::KAFKA_LAG, "High watermark minus the position committed in the table, per partition");
    describe_counter!(m::KAFKA_REBALANCES, "Consumer-group rebalances seen, by pipeline");
    describe_counter!(m::KAFKA_OFFSET_GAPS, "Records deleted by retention before they were ingested, per partition");
    describe_gauge!(m::KAFKA_TRUNCATED, "1 while a partition's high watermark is below the committed position");
    describe_gauge!(m::KAFKA_PAUSED, "1 while the source takes no new records for backpressure");
    describe_counter!(m::KAFKA_HOLDS, "Times the source held off reading for backpressure");
    describe_counter!(m::KAFKA_PAUSES, "Backpressure holds that outlasted the hold limit and paused the partitions");
    describe_gauge!(m::FRESHNESS, Unit::Seconds, "Now minus the newest event time committed, per table");
    describe_gauge!(m::SOURCE_UP, "1 while the source can reach what it reads from; the reason is on /readyz");
    describe_counter!(m::SOURCE_ERRORS, "Errors the source met, such as a refused connection");
    describe_gauge!(m::TABLE_DATA_FILES, "Live data files of the table's current snapshot");
    describe_gauge!(m::TABLE_DATA_FILE_AVG_BYTES, Unit::Bytes, "Average size of the table's live data files");
    describe_gauge!(m::TABLE_SNAPSHOTS, "Snapshots in the table's metadata");
    describe_gauge!(m::MAINTENANCE_LAST_RUN, Unit::Seconds, "Unix time of the table's last successful maintenance run");
    describe_gauge!(m::MAINTENANCE_DURATION, Unit::Seconds, "How long the table's last maintenance run took");
    describe_counter!(m::MAINTENANCE_FILES_COMPACTED, "Data files compaction replaced");
    describe_counter!(m::MAINTENANCE_SNAPSHOTS_EXPIRED, "Snapshots snapshot expiry removed");
    describe_counter!(m::MAINTENANCE_ORPHANS, "Orphan files deleted: files no metadata references");
    describe_counter!(m::MAINTENANCE_BYTES_RECLAIMED, Unit::Bytes, "Bytes of files expiry and orphan cleanup deleted");
    describe_counter!(m::MAINTENANCE_ERRORS, "Maintenance runs that failed; the next run tries again");
    describe_counter!(m::JOB_RUNS, "Zone-job runs that changed their output or failed, by outcome");
    describe_gauge!(m::JOB_DURATION, Unit::Seconds, "How long the job's last run took");
    describe_gauge!(
        m::JOB_LAG,
        Unit::Seconds,
        "Commit time of the input's newest snapshot minus that of the snapshot the job last read"
    );
    describe_counter!(m::JOB_ROWS, "Rows zone jobs read and wrote");
    describe_counter!(m::JOB_LATE, "Events too late for their windows, quarantined as late");
}
