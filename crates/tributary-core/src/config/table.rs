//! `[[tables]]`: a table's columns, partitioning, dedup and timestamp rules,
//! as written and as validated. Every error names the key that is wrong.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use super::{LINEAGE_COLUMNS, parse_bytes, parse_duration};
use crate::schema::{EpochUnit, Field, FieldType, PartitionField, PartitionTransform, TimestampRange};
use crate::table_name::{TableName, is_identifier};

/// `[[tables]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `namespace.table`.
    pub name: TableName,
    /// The columns, in order.
    pub fields: Vec<FieldConfig>,
    /// Partition fields such as `day(event_time)`.
    #[serde(default)]
    pub partition: Vec<String>,
    /// Column whose repeated values within the window are dropped.
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// How long a dedup key is remembered, e.g. `"24h"`.
    #[serde(default)]
    pub dedup_window: Option<String>,
    /// Memory the dedup index may take, e.g. `"256MiB"`; past it, keys
    /// spill to disk under the data directory.
    #[serde(default)]
    pub dedup_memory: Option<String>,
    /// Column holding the event time; it must parse for a record to land.
    #[serde(default)]
    pub event_time: Option<String>,
    /// Earliest timestamp accepted in any timestamp column (RFC 3339 or a
    /// date); default 1970-01-01.
    #[serde(default)]
    pub min_timestamp: Option<String>,
    /// Timestamps at or after this are refused; default 2200-01-01.
    #[serde(default)]
    pub max_timestamp: Option<String>,
    /// Overrides of `[maintenance]` for this table.
    #[serde(default)]
    pub maintenance: Option<super::MaintenanceConfig>,
}

/// One column in `fields`, or the element of a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// Column name (absent for a list element).
    #[serde(default)]
    pub name: Option<String>,
    /// Type name: a primitive, `struct` or `list`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Whether the value must be present and non-null.
    #[serde(default)]
    pub required: bool,
    /// Children of a `struct`.
    #[serde(default)]
    pub fields: Vec<FieldConfig>,
    /// Element of a `list`.
    #[serde(default)]
    pub element: Option<Box<FieldConfig>>,
    /// For a timestamp column: the unit of a value sent as a number, `s`,
    /// `ms` (default) or `us`.
    #[serde(default)]
    pub unit: Option<String>,
}

/// A validated table definition.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// Table name.
    pub name: TableName,
    /// User columns (lineage columns are added by the table layer).
    pub fields: Vec<Field>,
    /// Partition spec.
    pub partition: Vec<PartitionField>,
    /// Dedup key column and window.
    pub dedup: Option<(String, Duration)>,
    /// Memory bound of the dedup index, in bytes.
    pub dedup_memory: usize,
    /// Event-time column.
    pub event_time: Option<String>,
    /// Timestamps accepted in any timestamp column.
    pub timestamp_range: TimestampRange,
}

/// Default dedup window when a key is set without one.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Default memory bound of a table's dedup index.
pub const DEFAULT_DEDUP_MEMORY: usize = 256 << 20;

/// The smallest memory bound accepted for a dedup index.
const MIN_DEDUP_MEMORY: usize = 1 << 20;

impl TableConfig {
    pub(super) fn validate(&self) -> Result<TableDef, String> {
        if self.name.namespace == "quarantine" {
            return Err("the 'quarantine' namespace is managed by Tributary; pick another namespace".to_owned());
        }
        if self.fields.is_empty() {
            return Err("'fields' is empty; declare at least one column".to_owned());
        }
        let fields = validate_fields(&self.fields, "fields")?;
        let top = |name: &str| fields.iter().find(|f| f.name == name);
        let mut partition = Vec::new();
        for (i, p) in self.partition.iter().enumerate() {
            let pf = PartitionField::parse(p).map_err(|e| format!("partition[{i}]: {e}"))?;
            let col = top(&pf.column)
                .ok_or_else(|| format!("partition[{i}] = '{p}': no top-level column '{}'", pf.column))?;
            let ok = match pf.transform {
                PartitionTransform::Day => {
                    matches!(col.ty, FieldType::Date | FieldType::Timestamp | FieldType::Timestamptz)
                }
                PartitionTransform::Hour => matches!(col.ty, FieldType::Timestamp | FieldType::Timestamptz),
                PartitionTransform::Identity | PartitionTransform::Bucket(_) => {
                    !matches!(col.ty, FieldType::Struct(_) | FieldType::List(_) | FieldType::Float | FieldType::Double)
                }
            };
            if !ok {
                return Err(format!(
                    "partition[{i}] = '{p}': cannot apply it to column '{}' of type {}",
                    col.name, col.ty
                ));
            }
            partition.push(pf);
        }
        if self.dedup_key.is_none() && self.dedup_memory.is_some() {
            return Err("dedup_memory is set but dedup_key is not".to_owned());
        }
        let dedup = match (&self.dedup_key, &self.dedup_window) {
            (None, None) => None,
            (None, Some(_)) => return Err("dedup_window is set but dedup_key is not".to_owned()),
            (Some(k), w) => {
                let col = top(k).ok_or_else(|| format!("dedup_key = '{k}': no top-level column '{k}'"))?;
                if !matches!(col.ty, FieldType::String | FieldType::Long | FieldType::Int) {
                    return Err(format!(
                        "dedup_key = '{k}': column type {} cannot be a key; use string, long or int",
                        col.ty
                    ));
                }
                let window = match w {
                    Some(w) => parse_duration(w).map_err(|e| format!("dedup_window: {e}"))?,
                    None => DEFAULT_DEDUP_WINDOW,
                };
                Some((k.clone(), window))
            }
        };
        let dedup_memory = match &self.dedup_memory {
            None => DEFAULT_DEDUP_MEMORY,
            Some(m) => match parse_bytes(m) {
                Ok(n) if n >= MIN_DEDUP_MEMORY => n,
                Ok(_) => return Err(format!("dedup_memory = '{m}' is below 1MiB; give it at least \"1MiB\"")),
                Err(e) => return Err(format!("dedup_memory: {e}")),
            },
        };
        if let Some(et) = &self.event_time {
            let col = top(et).ok_or_else(|| format!("event_time = '{et}': no top-level column '{et}'"))?;
            if !matches!(col.ty, FieldType::Timestamp | FieldType::Timestamptz | FieldType::Date) {
                return Err(format!("event_time = '{et}': column type {} is not a date or timestamp", col.ty));
            }
        }
        let bound = |key: &str, value: &Option<String>, default: i64| match value {
            None => Ok(default),
            Some(v) => parse_instant(v).ok_or_else(|| {
                format!(
                    "{key} = '{v}' is not a date or timestamp; write e.g. \"1970-01-01\" or \"2026-01-01T00:00:00Z\""
                )
            }),
        };
        let default = TimestampRange::default();
        let timestamp_range = TimestampRange {
            min_us: bound("min_timestamp", &self.min_timestamp, default.min_us)?,
            max_us: bound("max_timestamp", &self.max_timestamp, default.max_us)?,
        };
        if timestamp_range.min_us >= timestamp_range.max_us {
            return Err("min_timestamp must be earlier than max_timestamp".to_owned());
        }
        Ok(TableDef {
            name: self.name.clone(),
            fields,
            partition,
            dedup,
            dedup_memory,
            event_time: self.event_time.clone(),
            timestamp_range,
        })
    }
}

fn validate_fields(cfg: &[FieldConfig], path: &str) -> Result<Vec<Field>, String> {
    let mut names = HashSet::new();
    cfg.iter()
        .enumerate()
        .map(|(i, f)| {
            let here = format!("{path}[{i}]");
            let name = f.name.clone().ok_or_else(|| format!("{here}: 'name' is missing"))?;
            if !is_identifier(&name) {
                return Err(format!("{here}.name = '{name}': use lowercase letters, digits and '_'"));
            }
            if path == "fields" && LINEAGE_COLUMNS.contains(&name.as_str()) {
                return Err(format!("{here}.name = '{name}' is a lineage column Tributary adds itself; rename it"));
            }
            if !names.insert(name.clone()) {
                return Err(format!("{here}.name = '{name}' is declared twice"));
            }
            validate_field(f, name, &here)
        })
        .collect()
}

fn validate_field(f: &FieldConfig, name: String, here: &str) -> Result<Field, String> {
    let mut field = Field::new(name, field_type(f, here)?, f.required);
    if let Some(unit) = &f.unit {
        if !matches!(field.ty, FieldType::Timestamp | FieldType::Timestamptz) {
            return Err(format!("{here}.unit applies to timestamp columns only; remove it"));
        }
        field.epoch_unit = EpochUnit::parse(unit).map_err(|e| format!("{here}.unit: {e}"))?;
    }
    Ok(field)
}

fn field_type(f: &FieldConfig, here: &str) -> Result<FieldType, String> {
    match f.ty.trim().to_ascii_lowercase().as_str() {
        "struct" => {
            if f.fields.is_empty() {
                return Err(format!("{here}: a struct needs 'fields'"));
            }
            Ok(FieldType::Struct(validate_fields(&f.fields, &format!("{here}.fields"))?))
        }
        "list" => {
            let e =
                f.element.as_ref().ok_or_else(|| format!("{here}: a list needs 'element = {{ type = \"...\" }}'"))?;
            Ok(FieldType::List(Box::new(validate_field(e, "element".to_owned(), &format!("{here}.element"))?)))
        }
        _ => {
            if !f.fields.is_empty() || f.element.is_some() {
                return Err(format!("{here}: 'fields' and 'element' only apply to struct and list"));
            }
            FieldType::parse_primitive(&f.ty).map_err(|e| format!("{here}.type: {e}"))
        }
    }
}

/// Parses an RFC 3339 timestamp or a `YYYY-MM-DD` date (midnight UTC) into
/// microseconds since the epoch.
fn parse_instant(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        return Some(t.timestamp_micros());
    }
    let day = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}
