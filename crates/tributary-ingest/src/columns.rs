//! Typed rows → one Arrow `RecordBatch` in the table's exact Arrow schema.
//!
//! The builder is driven by the Arrow schema derived from the Iceberg schema
//! (which carries the Parquet field ids), not by the config, so the batch
//! always matches what the Parquet writer expects, nested types included.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    LargeBinaryBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, SchemaRef, TimeUnit};

use crate::error::IngestError;
use crate::validate::Cell;

const NULL: Cell = Cell::Null;

/// Builds a batch from rows whose cells follow `schema`'s columns.
pub fn rows_to_batch(schema: &SchemaRef, rows: &[Vec<Cell>]) -> Result<RecordBatch, IngestError> {
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| build(f.data_type(), &rows.iter().map(|r| r.get(i).unwrap_or(&NULL)).collect::<Vec<_>>()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| IngestError::Internal(format!("building batch: {e}")))
}

macro_rules! prim {
    ($builder:expr, $cells:expr, $pat:pat => $val:expr) => {{
        let mut b = $builder;
        for c in $cells.iter() {
            match c {
                $pat => b.append_value($val),
                _ => b.append_null(),
            }
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

fn build(dt: &DataType, cells: &[&Cell]) -> Result<ArrayRef, IngestError> {
    let n = cells.len();
    Ok(match dt {
        DataType::Utf8 => prim!(StringBuilder::with_capacity(n, n * 16), cells, Cell::Str(s) => s),
        DataType::Boolean => prim!(BooleanBuilder::with_capacity(n), cells, Cell::Bool(v) => *v),
        DataType::Int32 => prim!(Int32Builder::with_capacity(n), cells, Cell::Int(v) => *v),
        DataType::Int64 => prim!(Int64Builder::with_capacity(n), cells, Cell::Long(v) => *v),
        DataType::Float32 => prim!(Float32Builder::with_capacity(n), cells, Cell::Float(v) => *v),
        DataType::Float64 => prim!(Float64Builder::with_capacity(n), cells, Cell::Double(v) => *v),
        DataType::Date32 => prim!(Date32Builder::with_capacity(n), cells, Cell::Date(v) => *v),
        DataType::LargeBinary => prim!(LargeBinaryBuilder::with_capacity(n, n * 16), cells, Cell::Bytes(v) => v),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            prim!(TimestampMicrosecondBuilder::with_capacity(n).with_timezone_opt(tz.clone()), cells, Cell::Ts(v) => *v)
        }
        DataType::Decimal128(p, s) => {
            let b = Decimal128Builder::with_capacity(n)
                .with_precision_and_scale(*p, *s)
                .map_err(|e| IngestError::Internal(e.to_string()))?;
            prim!(b, cells, Cell::Decimal(v) => *v)
        }
        DataType::Struct(fields) => {
            let children = fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let children: Vec<&Cell> = cells
                        .iter()
                        .map(|c| match c {
                            Cell::Struct(v) => v.get(i).unwrap_or(&NULL),
                            _ => &NULL,
                        })
                        .collect();
                    build(f.data_type(), &children)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let nulls = NullBuffer::from_iter(cells.iter().map(|c| matches!(c, Cell::Struct(_))));
            Arc::new(
                StructArray::try_new(fields.clone(), children, Some(nulls))
                    .map_err(|e| IngestError::Internal(format!("struct column: {e}")))?,
            )
        }
        DataType::List(field) => {
            let mut lengths = Vec::with_capacity(cells.len());
            let mut items: Vec<&Cell> = Vec::new();
            for c in cells {
                match c {
                    Cell::List(v) => {
                        lengths.push(v.len());
                        items.extend(v.iter());
                    }
                    _ => lengths.push(0),
                }
            }
            let values = build(field.data_type(), &items)?;
            let nulls = NullBuffer::from_iter(cells.iter().map(|c| matches!(c, Cell::List(_))));
            Arc::new(
                ListArray::try_new(field.clone(), OffsetBuffer::from_lengths(lengths), values, Some(nulls))
                    .map_err(|e| IngestError::Internal(format!("list column: {e}")))?,
            )
        }
        other => return Err(IngestError::Internal(format!("unsupported Arrow type {other} in table schema"))),
    })
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_schema::{Field, Fields, Schema};

    use super::*;

    #[test]
    fn builds_nested_columns_with_nulls() {
        let point = Fields::from(vec![Field::new("lat", DataType::Float64, false)]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("geo", DataType::Struct(point), true),
            Field::new("tags", DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))), true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())), true),
        ]));
        let rows = vec![
            vec![
                Cell::Str("a".into()),
                Cell::Struct(vec![Cell::Double(1.0)]),
                Cell::List(vec![Cell::Str("x".into())]),
                Cell::Ts(5),
            ],
            vec![Cell::Str("b".into()), Cell::Null, Cell::Null, Cell::Null],
        ];
        let batch = rows_to_batch(&schema, &rows).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert!(batch.column(1).is_null(1));
        assert!(!batch.column(2).is_null(0));
        assert!(batch.column(3).is_null(1));
    }
}
