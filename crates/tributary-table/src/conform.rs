//! Batches validated under an earlier schema of a table, brought to its
//! current one.
//!
//! A writer validates rows against the schema it loaded at start. Another
//! worker may evolve the table meanwhile (a new optional column, a widened
//! type); after its next reload the writer's batches no longer match the
//! table it writes through, and writing them failed with "field id not
//! found" until a restart. Evolution is additive, so every old batch can be
//! expressed in the new schema: columns are matched by Iceberg field id (not
//! by name or position), widened where the type grew, and columns the batch
//! does not have are filled with NULLs.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StructArray, new_null_array};
use arrow_schema::{DataType, Field, Fields, SchemaRef};
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;

use crate::error::{Result, TableError};

/// `batch` in `target`'s schema; the batch itself when it already matches.
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == target.fields() {
        return Ok(batch.clone());
    }
    let columns = conform_columns(batch.schema().fields(), batch.columns(), target.fields(), batch.num_rows())?;
    RecordBatch::try_new(target.clone(), columns).map_err(|e| mismatch(&e.to_string()))
}

fn conform_columns(from: &Fields, columns: &[ArrayRef], to: &Fields, rows: usize) -> Result<Vec<ArrayRef>> {
    to.iter()
        .map(|want| match from.iter().position(|have| field_id(have).is_some_and(|id| field_id(want) == Some(id))) {
            Some(i) => conform_array(&columns[i], want),
            None if want.is_nullable() => Ok(new_null_array(want.data_type(), rows)),
            None => Err(mismatch(&format!("required column '{}' is missing from the batch", want.name()))),
        })
        .collect()
}

fn conform_array(array: &ArrayRef, want: &Field) -> Result<ArrayRef> {
    if array.data_type() == want.data_type() {
        return Ok(array.clone());
    }
    match (array.data_type(), want.data_type()) {
        (DataType::Struct(have), DataType::Struct(fields)) => {
            let parts = array.as_any().downcast_ref::<StructArray>().ok_or_else(|| mismatch("not a struct array"))?;
            let columns = conform_columns(have, parts.columns(), fields, parts.len())?;
            let conformed = StructArray::try_new(fields.clone(), columns, parts.nulls().cloned())
                .map_err(|e| mismatch(&e.to_string()))?;
            Ok(Arc::new(conformed))
        }
        // Widening (int → long, float → double, a larger decimal precision)
        // and element types of lists: a lossless cast.
        _ => arrow_cast::cast(array, want.data_type()).map_err(|e| mismatch(&e.to_string())),
    }
}

fn field_id(f: &Field) -> Option<&str> {
    f.metadata().get(PARQUET_FIELD_ID_META_KEY).map(String::as_str)
}

fn mismatch(reason: &str) -> TableError {
    TableError::Config(format!("a batch does not fit the table's current schema: {reason}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::{Int32Array, Int64Array, StringArray};
    use arrow_schema::Schema;

    use super::*;

    fn field(name: &str, ty: DataType, id: &str) -> Field {
        Field::new(name, ty, true).with_metadata(HashMap::from([(PARQUET_FIELD_ID_META_KEY.to_owned(), id.into())]))
    }

    #[test]
    fn an_old_batch_fits_an_evolved_schema_by_field_id() {
        let old = Arc::new(Schema::new(vec![field("qty", DataType::Int32, "1"), field("name", DataType::Utf8, "2")]));
        let batch = RecordBatch::try_new(
            old,
            vec![Arc::new(Int32Array::from(vec![1, 2])), Arc::new(StringArray::from(vec!["a", "b"]))],
        )
        .unwrap();
        // Reordered, widened, and a new column.
        let new = Arc::new(Schema::new(vec![
            field("name", DataType::Utf8, "2"),
            field("note", DataType::Utf8, "3"),
            field("qty", DataType::Int64, "1"),
        ]));
        let out = conform(&batch, &new).unwrap();
        assert_eq!(out.schema(), new);
        assert_eq!(out.column(2).as_any().downcast_ref::<Int64Array>().unwrap().values(), &[1, 2]);
        assert_eq!(out.column(1).null_count(), 2);
    }

    #[test]
    fn a_missing_required_column_is_refused() {
        let old = Arc::new(Schema::new(vec![field("a", DataType::Int32, "1")]));
        let batch = RecordBatch::try_new(old, vec![Arc::new(Int32Array::from(vec![1]))]).unwrap();
        let new = Arc::new(Schema::new(vec![
            field("a", DataType::Int32, "1"),
            Field::new("b", DataType::Int32, false)
                .with_metadata(HashMap::from([(PARQUET_FIELD_ID_META_KEY.to_owned(), "2".into())])),
        ]));
        assert!(conform(&batch, &new).unwrap_err().to_string().contains("required column 'b'"));
    }
}
