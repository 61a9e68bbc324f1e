//! Decode → validate → enrich: turns one request body into a batch of good
//! rows (with lineage columns) and a list of rejects, off the I/O runtime.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, LargeBinaryArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::SchemaRef;
use tributary_core::TableName;
use tributary_core::config::{LINEAGE_COLUMNS, TableDef};
use tributary_core::schema::{Field, TimestampRange, apply_input_rules};
use tributary_table::LoadedTable;
use tributary_table::iceberg::arrow::schema_to_arrow_schema;
use tributary_table::iceberg::spec::Schema;
use tributary_table::schema::from_iceberg_schema;

use crate::decode::{BodyFormat, RawRecord, split_records};
use crate::error::IngestError;
use crate::rows::{LineageColumn, Rows};
use crate::validate::Rejection;

/// What the pipeline needs to know about one target table.
#[derive(Debug)]
pub struct IngestSchema {
    /// Target table.
    pub table: TableName,
    /// The table's columns in order, lineage included.
    pub columns: Vec<Field>,
    /// Indices of the user columns within `columns`.
    pub(crate) user: Vec<usize>,
    /// User columns, in order, for validation.
    pub(crate) user_fields: Vec<Field>,
    /// Arrow schema with Iceberg field ids.
    pub arrow: SchemaRef,
    /// Current Iceberg schema id, stamped into `_schema_id`.
    pub schema_id: i32,
    /// The lineage columns present, by index within `columns`.
    pub(crate) lineage: Vec<(usize, LineageColumn)>,
    /// Event-time column index within `user_fields`.
    pub(crate) event_time: Option<usize>,
    /// Timestamps the table accepts.
    pub(crate) timestamps: TimestampRange,
    /// Dedup key column index and window.
    pub dedup: Option<(usize, Duration)>,
    /// Arrow schema of the quarantine table.
    pub quarantine_arrow: SchemaRef,
}

impl IngestSchema {
    /// Derives the ingest view of a table from its loaded state.
    pub fn new(def: &TableDef, table: &LoadedTable, quarantine: &LoadedTable) -> Result<Self, IngestError> {
        Self::of(def, table.metadata.current_schema(), quarantine.metadata.current_schema())
    }

    /// The ingest view of a table with the Iceberg schema `schema`, whose
    /// quarantine table has `quarantine`.
    pub(crate) fn of(def: &TableDef, schema: &Schema, quarantine: &Schema) -> Result<Self, IngestError> {
        let columns = from_iceberg_schema(schema);
        let user: Vec<usize> =
            (0..columns.len()).filter(|i| !LINEAGE_COLUMNS.contains(&columns[*i].name.as_str())).collect();
        let mut user_fields: Vec<Field> = user.iter().map(|i| columns[*i].clone()).collect();
        // Validation follows the table's schema, with the config's input
        // rules (epoch units) on top.
        apply_input_rules(&mut user_fields, &def.fields);
        let arrow = |s: &Schema| {
            schema_to_arrow_schema(s)
                .map(Arc::new)
                .map_err(|e| IngestError::Internal(format!("arrow schema of {} or its quarantine: {e}", def.name)))
        };
        let dedup = def.dedup.as_ref().and_then(|(k, w)| columns.iter().position(|c| &c.name == k).map(|i| (i, *w)));
        let lineage = columns.iter().enumerate().filter_map(|(i, c)| Some((i, LineageColumn::of(&c.name)?))).collect();
        let event_time = def.event_time.as_ref().and_then(|e| user_fields.iter().position(|f: &Field| &f.name == e));
        let ingest = Self {
            table: def.name.clone(),
            user,
            user_fields,
            arrow: arrow(schema)?,
            schema_id: schema.schema_id(),
            lineage,
            event_time,
            timestamps: def.timestamp_range,
            dedup,
            quarantine_arrow: arrow(quarantine)?,
            columns,
        };
        // The config and the table agree on every column's shape.
        Rows::new(&ingest)?;
        Ok(ingest)
    }

    /// Index of the user column `name` among the validated fields, for
    /// [`Rows::push_json`]'s `fill`.
    pub fn user_field(&self, name: &str) -> Option<usize> {
        self.user_fields.iter().position(|f| f.name == name)
    }

    /// Index of the event-time column within `columns`.
    pub fn event_time_column(&self) -> Option<usize> {
        self.event_time.map(|i| self.user[i])
    }
}

/// A table made ready for ingestion once at start-up: its ingest view, the
/// states of it and its quarantine table, and its dedup index: what the
/// table's pipeline starts from.
#[derive(Debug, Clone)]
pub struct PreparedTable {
    /// Ingest view of the schema.
    pub schema: Arc<IngestSchema>,
    /// The target table.
    pub table: LoadedTable,
    /// Its quarantine table.
    pub quarantine: LoadedTable,
    /// The table's dedup index, if it has a key.
    pub dedup: Option<crate::dedup::TableDedup>,
    /// The table's outcome metrics.
    pub outcomes: crate::outcomes::Outcomes,
}

/// One rejected record on its way to quarantine.
#[derive(Debug, Clone)]
pub struct Reject {
    /// The bytes as received.
    pub raw: Vec<u8>,
    /// Why.
    pub rejection: Rejection,
    /// Where it came from, e.g. `request 3f2…/record 17`.
    pub position: String,
}

/// A request body after validation.
#[derive(Debug)]
pub struct Prepared {
    /// Good rows in the table's Arrow schema.
    pub batch: RecordBatch,
    /// Rejected records.
    pub rejects: Vec<Reject>,
    /// Records in the body.
    pub received: usize,
    /// Bytes of the body, for the commit trigger.
    pub bytes: usize,
    /// When the body arrived, microseconds since the epoch.
    pub ingested_at_us: i64,
}

/// Where a record came from, for the lineage columns.
#[derive(Debug, Clone, Copy)]
pub struct Lineage<'a> {
    /// `_source`, e.g. `http` or `kafka`.
    pub source: &'a str,
    /// `_source_partition`.
    pub partition: Option<i32>,
    /// `_source_offset`.
    pub offset: Option<i64>,
    /// `_ingested_at`, microseconds since the epoch.
    pub ingested_at_us: i64,
    /// `_source_file`: the file's location, for a file source.
    pub file: Option<&'a str>,
}

/// Records per part below which a body is validated on one thread: the
/// threads and the final concatenation cost more than they save.
const MIN_PART_RECORDS: usize = 4096;

/// Splits, validates and enriches a body. `request_id` tags quarantine rows.
/// A large body is cut into contiguous parts validated on all cores; rows
/// keep their order and rejects their record numbers.
pub fn prepare(
    schema: &IngestSchema,
    body: &[u8],
    format: BodyFormat,
    source: &str,
    request_id: &str,
    ingested_at_us: i64,
) -> Result<Prepared, IngestError> {
    let records = split_records(body, format)?;
    let received = records.len();
    let lineage = Lineage { source, partition: None, offset: None, ingested_at_us, file: None };
    let parts = tributary_core::cores::parts(received, MIN_PART_RECORDS);
    let part = |first: usize, records: &[RawRecord<'_>]| prepare_part(schema, records, first, &lineage, request_id);
    let (batch, rejects) = if parts == 1 {
        part(0, &records)?
    } else {
        let size = received.div_ceil(parts);
        let done: Vec<_> = std::thread::scope(|s| {
            let running: Vec<_> =
                records.chunks(size).enumerate().map(|(k, chunk)| s.spawn(move || part(k * size, chunk))).collect();
            running.into_iter().map(|t| t.join()).collect()
        });
        let mut batches = Vec::with_capacity(parts);
        let mut rejects = Vec::new();
        for d in done {
            let (batch, mut r) = d.map_err(|_| IngestError::Internal("a validation thread panicked".to_owned()))??;
            batches.push(batch);
            rejects.append(&mut r);
        }
        let batch = arrow_select::concat::concat_batches(&schema.arrow, &batches)
            .map_err(|e| IngestError::Internal(format!("joining validated parts: {e}")))?;
        (batch, rejects)
    };
    Ok(Prepared { batch, rejects, received, bytes: body.len(), ingested_at_us })
}

/// Validates `records`, the body's records from number `first` on.
fn prepare_part(
    schema: &IngestSchema,
    records: &[RawRecord<'_>],
    first: usize,
    lineage: &Lineage<'_>,
    request_id: &str,
) -> Result<(RecordBatch, Vec<Reject>), IngestError> {
    let mut rows = Rows::new(schema)?;
    rows.reserve(records.len());
    let mut rejects = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        if let Err(rejection) = rows.push_json(schema, rec.raw, &[], lineage) {
            rejects.push(Reject {
                raw: rec.raw.to_vec(),
                rejection,
                position: format!("request {request_id} record {}", first + i),
            });
        }
    }
    Ok((rows.finish(schema)?, rejects))
}

/// Builds the quarantine batch for `rejects`.
pub fn quarantine_batch(
    schema: &SchemaRef,
    rejects: &[Reject],
    source: &str,
    at_us: i64,
) -> Result<RecordBatch, IngestError> {
    let text =
        |f: fn(&Reject) -> Option<&str>| -> ArrayRef { Arc::new(rejects.iter().map(f).collect::<StringArray>()) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rejects.iter().map(|r| Some(r.raw.as_slice())).collect::<LargeBinaryArray>()),
        text(|r| Some(r.rejection.kind)),
        text(|r| Some(&r.rejection.message)),
        text(|r| r.rejection.field.as_deref()),
        Arc::new(StringArray::from(vec![source; rejects.len()])),
        text(|r| Some(&r.position)),
        Arc::new(
            TimestampMicrosecondArray::from(vec![at_us; rejects.len()])
                .with_timezone_opt(timezone(schema, "quarantined_at")),
        ),
        Arc::new(rejects.iter().map(|r| Some(String::from_utf8_lossy(&r.raw))).collect::<StringArray>()),
    ];
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| IngestError::Internal(format!("quarantine batch: {e}")))
}

/// The time zone of timestamp column `name` of `schema`.
fn timezone(schema: &SchemaRef, name: &str) -> Option<Arc<str>> {
    match schema.field_with_name(name).map(|f| f.data_type()) {
        Ok(arrow_schema::DataType::Timestamp(_, tz)) => tz.clone(),
        _ => None,
    }
}
