//! Every metric name Tributary emits, in one place, so dashboards and the
//! code cannot drift apart. Labels are noted beside each name.

/// Records received by any source. Labels: `table`.
pub const RECORDS_RECEIVED: &str = "tributary_records_received_total";
/// Records committed to their target table. Labels: `table`.
pub const RECORDS_WRITTEN: &str = "tributary_records_written_total";
/// Records sent to quarantine. Labels: `table`, `reason`.
pub const RECORDS_QUARANTINED: &str = "tributary_records_quarantined_total";
/// Records dropped as duplicates of the dedup key. Labels: `table`.
pub const RECORDS_DEDUPLICATED: &str = "tributary_records_deduplicated_total";
/// Snapshots committed. Labels: `table`.
pub const COMMITS: &str = "tributary_commits_total";
/// Commits refused by the catalog compare-and-swap. Labels: `table`, `outcome`
/// (`retried` or `zombie`).
pub const COMMIT_CONFLICTS: &str = "tributary_commit_conflicts_total";
/// Seconds from the start of a commit to the catalog swap. Labels: `table`.
pub const COMMIT_LATENCY: &str = "tributary_commit_latency_seconds";
/// Id of the current snapshot. Labels: `table`.
pub const CURRENT_SNAPSHOT: &str = "tributary_current_snapshot_id";
/// Bytes of Parquet data written. Labels: `table`.
pub const BYTES_WRITTEN: &str = "tributary_data_bytes_written_total";
/// SQL queries served. Labels: `outcome` (`ok`, `error`, or `refused` for a
/// statement that is not a read).
pub const QUERIES: &str = "tributary_queries_total";
/// Consumer-group rebalances seen. Labels: `pipeline`.
pub const KAFKA_REBALANCES: &str = "tributary_kafka_rebalances_total";
/// High watermark minus the committed position. Labels: `pipeline`, `topic`, `partition`.
pub const KAFKA_LAG: &str = "tributary_kafka_lag_records";
/// Records read from Kafka. Labels: `pipeline`.
pub const KAFKA_RECORDS: &str = "tributary_kafka_records_total";
/// Records lost to retention before ingestion. Labels: `pipeline`, `topic`, `partition`.
pub const KAFKA_OFFSET_GAPS: &str = "tributary_kafka_offset_gap_records_total";
/// Seconds between now and the newest event time committed. Labels: `table`.
pub const FRESHNESS: &str = "tributary_freshness_seconds";
/// 1 while a partition's high watermark is below the committed position (the
/// broker lost committed records). Labels: `pipeline`, `topic`, `partition`.
pub const KAFKA_TRUNCATED: &str = "tributary_kafka_partition_truncated";
/// 1 while the source takes no new records because two commit batches'
/// worth waits for the pipeline (backpressure). Labels: `pipeline`.
pub const KAFKA_PAUSED: &str = "tributary_kafka_paused";
/// Times the source held off reading for backpressure. Labels: `pipeline`.
pub const KAFKA_HOLDS: &str = "tributary_kafka_backpressure_holds_total";
/// Holds that outlasted the hold limit, so the source paused its partitions
/// (which drops librdkafka's prefetch). Labels: `pipeline`.
pub const KAFKA_PAUSES: &str = "tributary_kafka_backpressure_pauses_total";
/// Files a file source finished or refused, by outcome (`loaded`; `failed`:
/// landed as one quarantine entry; `changed`: refused, changed after it was
/// read; `unreadable`: tried again later). Labels: `table`, `outcome`.
pub const FILES: &str = "tributary_files_total";
/// 1 while a source can reach what it reads from, 0 while it cannot (the
/// reason is on `/readyz`). Labels: `source`.
pub const SOURCE_UP: &str = "tributary_source_up";
/// Errors a source met (connection refused, authentication failed…).
/// Labels: `source`.
pub const SOURCE_ERRORS: &str = "tributary_source_errors_total";
/// Live data files of a table's current snapshot. Labels: `table`.
pub const TABLE_DATA_FILES: &str = "tributary_table_data_files";
/// Average size of those files, in bytes. Labels: `table`.
pub const TABLE_DATA_FILE_AVG_BYTES: &str = "tributary_table_data_file_avg_bytes";
/// Snapshots in a table's metadata. Labels: `table`.
pub const TABLE_SNAPSHOTS: &str = "tributary_table_snapshots";
/// Unix time of the last maintenance run that succeeded. Labels: `table`.
pub const MAINTENANCE_LAST_RUN: &str = "tributary_maintenance_last_run_timestamp_seconds";
/// How long the last maintenance run took. Labels: `table`.
pub const MAINTENANCE_DURATION: &str = "tributary_maintenance_duration_seconds";
/// Data files compaction replaced. Labels: `table`.
pub const MAINTENANCE_FILES_COMPACTED: &str = "tributary_maintenance_files_compacted_total";
/// Snapshots expiry removed. Labels: `table`.
pub const MAINTENANCE_SNAPSHOTS_EXPIRED: &str = "tributary_maintenance_snapshots_expired_total";
/// Orphan files deleted. Labels: `table`.
pub const MAINTENANCE_ORPHANS: &str = "tributary_maintenance_orphan_files_removed_total";
/// Bytes of files deleted by expiry and orphan cleanup. Labels: `table`.
pub const MAINTENANCE_BYTES_RECLAIMED: &str = "tributary_maintenance_bytes_reclaimed_total";
/// Maintenance runs that failed (the next one tries again). Labels: `table`.
pub const MAINTENANCE_ERRORS: &str = "tributary_maintenance_errors_total";
/// Dedup keys held, in memory and on disk (gauge). Labels: `table`.
pub const DEDUP_KEYS: &str = "tributary_dedup_keys";
/// Bytes of memory the dedup index takes (gauge). Labels: `table`.
pub const DEDUP_MEMORY: &str = "tributary_dedup_memory_bytes";
/// Bytes of the dedup index's runs on local disk (gauge). Labels: `table`.
pub const DEDUP_DISK: &str = "tributary_dedup_disk_bytes";
/// Zone-job runs that changed their output, by outcome (`ok`, `failed`).
/// Labels: `job`, `outcome`.
pub const JOB_RUNS: &str = "tributary_job_runs_total";
/// Seconds the job's last run took. Labels: `job`.
pub const JOB_DURATION: &str = "tributary_job_duration_seconds";
/// Commit time of the input's newest snapshot minus that of the snapshot
/// the job last read: how far the output trails its input. Labels: `job`.
pub const JOB_LAG: &str = "tributary_job_lag_seconds";
/// Rows a job read and wrote. Labels: `job`, `direction` (`read`, `written`).
pub const JOB_ROWS: &str = "tributary_job_rows_total";
/// Events too late for their windows, quarantined as `late`. Labels: `job`.
pub const JOB_LATE: &str = "tributary_job_late_events_total";
