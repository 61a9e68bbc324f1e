//! `DESCRIBE ns.table` in the types the config uses (`decimal(12,2)`,
//! `timestamptz`, `list<string>`), not Arrow's (`Decimal128(12, 2)`,
//! `Timestamp(µs, "+00:00")`): users write the former, and the table is an
//! Iceberg table, not an Arrow one.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Int32Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use tributary_core::TableName;
use tributary_table::Lake;

use crate::{QueryError, QueryResult};

/// The columns of the table `parts` names (`[ns, t]`, or `[t]` in `raw`),
/// or `None` when it names no plain table (a suffix, an unknown table):
/// DataFusion then answers as usual.
pub async fn describe(lake: &Lake, parts: &[String]) -> Result<Option<QueryResult>, QueryError> {
    let name = match parts {
        [ns, t] => TableName::new(ns, t),
        [t] => TableName::new("raw", t),
        _ => return Ok(None),
    };
    let ext =
        |e: tributary_table::TableError| QueryError::Sql(datafusion::error::DataFusionError::External(Box::new(e)));
    let Some(loaded) = lake.try_load(&name).await.map_err(ext)? else { return Ok(None) };
    let schema = loaded.metadata.current_schema();
    let (mut names, mut types) = (StringBuilder::new(), StringBuilder::new());
    let (mut nullable, mut ids) = (BooleanBuilder::new(), Int32Builder::new());
    for (field, iceberg) in tributary_table::schema::from_iceberg_schema(schema).iter().zip(schema.as_struct().fields())
    {
        names.append_value(&field.name);
        types.append_value(field.ty.to_string());
        nullable.append_value(!field.required);
        ids.append_value(iceberg.id);
    }
    let out = Arc::new(Schema::new(vec![
        Field::new("column_name", DataType::Utf8, false),
        Field::new("data_type", DataType::Utf8, false),
        Field::new("is_nullable", DataType::Boolean, false),
        Field::new("field_id", DataType::Int32, false),
    ]));
    let columns: Vec<ArrayRef> =
        vec![Arc::new(names.finish()), Arc::new(types.finish()), Arc::new(nullable.finish()), Arc::new(ids.finish())];
    let batch = RecordBatch::try_new(out.clone(), columns).map_err(|e| QueryError::Encode(e.to_string()))?;
    Ok(Some(QueryResult { schema: out, batches: vec![batch] }))
}
