//! `[maintenance]` and its per-table overrides (`maintenance = { … }` in a
//! `[[tables]]` entry): compaction and snapshot expiry, which `serve` runs
//! on a schedule and `tributary maintain` runs once.
//!
//! The defaults keep a table that commits 5 times a second flat: about
//! 3,000 snapshots (10 minutes) in its metadata, a bounded manifest list,
//! and files compacted every few minutes. Idempotency keys live in snapshot
//! summaries, so snapshots are kept at least as long as
//! `server.idempotency_window`; validation refuses a shorter retention.

use std::time::Duration;

use serde::Deserialize;

use super::parse_duration;

/// `[maintenance]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Whether `serve` runs maintenance (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// How often `serve` maintains each table, e.g. `"1m"`.
    #[serde(default)]
    pub interval: Option<String>,
    /// Snapshots newer than this are kept, e.g. `"10m"`.
    #[serde(default)]
    pub snapshot_max_age: Option<String>,
    /// At least this many of the newest snapshots are kept.
    #[serde(default)]
    pub min_snapshots: Option<usize>,
    /// Fewest small files in a partition that are worth a compaction.
    #[serde(default)]
    pub compact_min_files: Option<usize>,
    /// Files nothing references are deleted once older than this, e.g. `"3d"`.
    #[serde(default)]
    pub orphan_min_age: Option<String>,
    /// Columns compaction sorts the rows of each file it writes by.
    #[serde(default)]
    pub sort_by: Option<Vec<String>>,
}

/// A table's maintenance, every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenancePolicy {
    /// Whether `serve` runs it.
    pub enabled: bool,
    /// How often.
    pub interval: Duration,
    /// Snapshot retention by age.
    pub snapshot_max_age: Duration,
    /// Snapshot retention by count.
    pub min_snapshots: usize,
    /// Fewest small files of a partition compacted together.
    pub compact_min_files: usize,
    /// The age guard of orphan cleanup.
    pub orphan_min_age: Duration,
    /// Size of the files compaction writes (`commit.target_file_size_bytes`).
    pub target_file_size_bytes: usize,
    /// Columns compaction sorts by (ascending, nulls first); empty: it
    /// keeps the order rows arrived in.
    pub sort_by: Vec<String>,
}

impl MaintenanceConfig {
    /// Resolves `self` over `base` (the `[maintenance]` section, for a
    /// table's override); `what` names the section in errors.
    pub fn resolve(
        &self,
        base: &MaintenancePolicy,
        what: &str,
        idempotency_window: Duration,
    ) -> Result<MaintenancePolicy, String> {
        let duration = |v: &Option<String>, key: &str, default: Duration| {
            v.as_deref().map_or(Ok(default), |s| parse_duration(s).map_err(|e| format!("{what}.{key}: {e}")))
        };
        let policy = MaintenancePolicy {
            enabled: self.enabled.unwrap_or(base.enabled),
            interval: duration(&self.interval, "interval", base.interval)?,
            snapshot_max_age: duration(&self.snapshot_max_age, "snapshot_max_age", base.snapshot_max_age)?,
            min_snapshots: self.min_snapshots.unwrap_or(base.min_snapshots),
            compact_min_files: self.compact_min_files.unwrap_or(base.compact_min_files),
            orphan_min_age: duration(&self.orphan_min_age, "orphan_min_age", base.orphan_min_age)?,
            target_file_size_bytes: base.target_file_size_bytes,
            sort_by: self.sort_by.clone().unwrap_or_else(|| base.sort_by.clone()),
        };
        if policy.interval.is_zero() {
            return Err(format!("{what}.interval must be longer than 0"));
        }
        if policy.min_snapshots == 0 {
            return Err(format!("{what}.min_snapshots must be at least 1 (the current snapshot)"));
        }
        if policy.compact_min_files < 2 {
            return Err(format!("{what}.compact_min_files must be at least 2"));
        }
        if policy.orphan_min_age < Duration::from_secs(3600) {
            return Err(format!(
                "{what}.orphan_min_age must be at least 1h: a younger file may belong to a commit in flight"
            ));
        }
        if policy.snapshot_max_age < idempotency_window {
            return Err(format!(
                "{what}.snapshot_max_age ({}) is shorter than server.idempotency_window ({}): idempotency keys \
                 live in snapshot summaries, so a retry after they expire would land again; raise \
                 snapshot_max_age (the metadata keeps every snapshot that young) or lower the window",
                human(policy.snapshot_max_age),
                human(idempotency_window)
            ));
        }
        Ok(policy)
    }
}

impl MaintenancePolicy {
    /// The policy of a table's quarantine table: the same, but unsorted
    /// (it has columns of its own).
    pub fn for_quarantine(&self) -> Self {
        Self { sort_by: Vec::new(), ..self.clone() }
    }

    /// Checks `sort_by` against the columns of `table`: each must be a
    /// top-level column of a type that orders (not a struct or a list).
    pub fn check_sort_by(&self, table: &super::TableDef, what: &str) -> Result<(), String> {
        for col in &self.sort_by {
            match table.fields.iter().find(|f| &f.name == col) {
                None => {
                    let names: Vec<&str> = table.fields.iter().map(|f| f.name.as_str()).collect();
                    return Err(format!(
                        "{what}.sort_by: table '{}' has no column '{col}'; its columns are {}",
                        table.name,
                        names.join(", ")
                    ));
                }
                Some(f) if matches!(f.ty, crate::schema::FieldType::Struct(_) | crate::schema::FieldType::List(_)) => {
                    return Err(format!("{what}.sort_by: column '{col}' is a struct or a list, which has no order"));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The defaults, with compaction writing files of `target_file_size_bytes`.
    pub fn defaults(target_file_size_bytes: usize) -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(60),
            snapshot_max_age: Duration::from_secs(600),
            min_snapshots: 10,
            compact_min_files: 10,
            orphan_min_age: Duration::from_secs(3 * 86_400),
            target_file_size_bytes,
            sort_by: Vec::new(),
        }
    }
}

/// A duration as the config would write it.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_override_resolves_over_the_section_and_retention_covers_the_window() {
        let base = MaintenancePolicy::defaults(1 << 20);
        let over = MaintenanceConfig { snapshot_max_age: Some("1h".into()), ..Default::default() };
        let p = over.resolve(&base, "tables[0].maintenance", Duration::from_secs(600)).unwrap();
        assert_eq!((p.snapshot_max_age, p.interval, p.min_snapshots), (Duration::from_secs(3600), base.interval, 10));
        let err = over.resolve(&base, "tables[0].maintenance", Duration::from_secs(86_400)).unwrap_err();
        assert!(err.contains("tables[0].maintenance.snapshot_max_age (1h)") && err.contains("(1d)"), "{err}");
        let bad = MaintenanceConfig { interval: Some("soon".into()), ..Default::default() };
        let err = bad.resolve(&base, "maintenance", Duration::ZERO).unwrap_err();
        assert!(err.contains("maintenance.interval"), "{err}");
    }
}
