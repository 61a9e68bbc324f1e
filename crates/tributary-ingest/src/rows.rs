//! A batch of a table's rows under construction: records are validated
//! straight into its column buffers, lineage columns are filled beside
//! them, and the whole is finished into one Arrow `RecordBatch` in the
//! table's exact schema.

use arrow_array::RecordBatch;

use crate::columns::Column;
use crate::error::IngestError;
use crate::prepare::{IngestSchema, Lineage};
use crate::validate::columnar::{self, Slot};
use crate::validate::{Rejection, Rules, validate_json};

/// A lineage column, resolved from its name once per schema so that rows
/// are enriched without comparing column names.
#[derive(Debug, Clone, Copy)]
pub enum LineageColumn {
    /// `_source`
    Source,
    /// `_source_partition`
    SourcePartition,
    /// `_source_offset`
    SourceOffset,
    /// `_ingested_at`
    IngestedAt,
    /// `_schema_id`
    SchemaId,
    /// `_source_file`
    SourceFile,
}

impl LineageColumn {
    /// The lineage column called `name`, if it is one.
    pub fn of(name: &str) -> Option<Self> {
        Some(match name {
            "_source" => Self::Source,
            "_source_partition" => Self::SourcePartition,
            "_source_offset" => Self::SourceOffset,
            "_ingested_at" => Self::IngestedAt,
            "_schema_id" => Self::SchemaId,
            "_source_file" => Self::SourceFile,
            _ => return None,
        })
    }
}

/// Valid records of one table, as columns.
#[derive(Debug)]
pub struct Rows {
    /// One per user field of the schema, in order.
    user: Vec<Column>,
    /// One per lineage column of the schema, in order.
    lineage: Vec<Column>,
    /// Scratch for the validator.
    slots: Vec<Slot>,
    /// Rows held: the length the user columns are cut back to.
    len: usize,
}

impl Rows {
    /// No rows yet, for `schema`.
    pub fn new(schema: &IngestSchema) -> Result<Self, IngestError> {
        let column = |i: usize| Column::new(schema.arrow.field(i).data_type());
        let user = schema.user.iter().map(|i| column(*i)).collect::<Result<Vec<_>, _>>()?;
        for (field, col) in schema.user_fields.iter().zip(&user) {
            if !columnar::fits(&field.ty, col) {
                return Err(IngestError::Internal(format!(
                    "column '{}' of {} is {} in the config but {} in the table",
                    field.name,
                    schema.table,
                    field.ty,
                    schema.arrow.field_with_name(&field.name).map_or("absent".into(), |f| f.data_type().to_string()),
                )));
            }
        }
        let lineage = schema.lineage.iter().map(|(i, _)| column(*i)).collect::<Result<_, _>>()?;
        Ok(Self { user, lineage, slots: Vec::new(), len: 0 })
    }

    /// Makes room for `records` more rows.
    pub fn reserve(&mut self, records: usize) {
        self.user.iter_mut().chain(&mut self.lineage).for_each(|c| c.reserve(records));
    }

    /// Validates one record (its JSON bytes) and appends it with its
    /// lineage, or says why it is refused and appends nothing. `fill`
    /// supplies a value for the user field at that index
    /// ([`IngestSchema::user_field`]) when the record has none.
    pub fn push_json(
        &mut self,
        schema: &IngestSchema,
        bytes: &[u8],
        fill: &[(usize, &str)],
        lineage: &Lineage<'_>,
    ) -> Result<(), Rejection> {
        let rules = Rules { fields: &schema.user_fields, event_time: schema.event_time, timestamps: schema.timestamps };
        if !columnar::append(bytes, &rules, fill, &mut self.user, &mut self.slots) {
            self.user.iter_mut().for_each(|c| c.truncate(self.len));
            return Err(explain(bytes, &rules, fill));
        }
        for ((_, kind), col) in schema.lineage.iter().zip(&mut self.lineage) {
            match (kind, &mut *col) {
                (LineageColumn::Source, Column::Str(c)) => c.push(lineage.source.as_bytes()),
                (LineageColumn::SourcePartition, Column::Int(c)) => c.push_opt(lineage.partition),
                (LineageColumn::SourceOffset, Column::Long(c)) => c.push_opt(lineage.offset),
                (LineageColumn::IngestedAt, Column::Ts(c, _)) => c.push(lineage.ingested_at_us),
                (LineageColumn::SchemaId, Column::Int(c)) => c.push(schema.schema_id),
                (LineageColumn::SourceFile, Column::Str(c)) if lineage.file.is_some() => {
                    c.push(lineage.file.unwrap_or_default().as_bytes());
                }
                _ => col.push_null(),
            }
        }
        self.len += 1;
        Ok(())
    }

    /// Drops every row held.
    pub fn clear(&mut self) {
        self.user.iter_mut().chain(&mut self.lineage).for_each(|c| c.truncate(0));
        self.len = 0;
    }

    /// The rows held, as one batch in the table's Arrow schema; none are
    /// held after.
    pub fn finish(&mut self, schema: &IngestSchema) -> Result<RecordBatch, IngestError> {
        let mut columns = vec![None; schema.arrow.fields().len()];
        for (i, col) in schema.user.iter().zip(&mut self.user) {
            columns[*i] = Some(col.finish()?);
        }
        for ((i, _), col) in schema.lineage.iter().zip(&mut self.lineage) {
            columns[*i] = Some(col.finish()?);
        }
        self.len = 0;
        let columns =
            columns.into_iter().map(|c| c.ok_or_else(|| IngestError::Internal("a column was not built".into())));
        RecordBatch::try_new(schema.arrow.clone(), columns.collect::<Result<_, _>>()?)
            .map_err(|e| IngestError::Internal(format!("building batch: {e}")))
    }
}

/// Why the reference validator refuses a record the columnar one refused.
fn explain(bytes: &[u8], rules: &Rules<'_>, fill: &[(usize, &str)]) -> Rejection {
    validate_json(bytes, rules, fill).err().unwrap_or_else(|| {
        // The two validators disagree: a defect. The record is kept, in
        // quarantine, and can be replayed once it is fixed.
        tracing::error!(record = %String::from_utf8_lossy(bytes), "validators disagree on a record");
        Rejection {
            kind: "validator_disagreement",
            field: None,
            message: "the columnar validator refused a record the reference validator accepts; please report it"
                .to_owned(),
        }
    })
}

#[cfg(test)]
mod tests {
    use tributary_core::config::LINEAGE_COLUMNS;

    use super::*;

    #[test]
    fn every_lineage_column_is_filled() {
        for name in LINEAGE_COLUMNS {
            assert!(LineageColumn::of(name).is_some(), "lineage column {name} is never filled");
        }
    }
}
