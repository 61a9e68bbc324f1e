//! Encodes query results as the HTTP API's JSON shape, a text table or CSV.

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value};

use crate::{QueryError, QueryResult};

/// `{"columns":[...],"rows":[[...],...]}` with JSON-typed values.
pub fn to_json(result: &QueryResult) -> Result<Value, QueryError> {
    let columns: Vec<Value> = result.schema.fields().iter().map(|f| Value::String(f.name().clone())).collect();
    let mut rows = Vec::new();
    for batch in &result.batches {
        // arrow-json names values by column; rename columns by position first
        // so that duplicate names (SELECT a, a) survive.
        let positional = positional(batch)?;
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        writer.write(&positional).map_err(|e| QueryError::Encode(e.to_string()))?;
        writer.finish().map_err(|e| QueryError::Encode(e.to_string()))?;
        let objects: Vec<Map<String, Value>> =
            serde_json::from_slice(&writer.into_inner()).map_err(|e| QueryError::Encode(e.to_string()))?;
        for mut obj in objects {
            rows.push(Value::Array(
                (0..columns.len()).map(|i| obj.remove(&i.to_string()).unwrap_or(Value::Null)).collect(),
            ));
        }
    }
    Ok(serde_json::json!({ "columns": columns, "rows": rows }))
}

fn positional(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    let fields: Vec<_> =
        batch.schema().fields().iter().enumerate().map(|(i, f)| f.as_ref().clone().with_name(i.to_string())).collect();
    RecordBatch::try_new(std::sync::Arc::new(arrow_schema::Schema::new(fields)), batch.columns().to_vec())
        .map_err(|e| QueryError::Encode(e.to_string()))
}

/// A boxed text table, as `psql` would print it.
pub fn to_table(result: &QueryResult) -> Result<String, QueryError> {
    if result.batches.is_empty() {
        let names: Vec<&str> = result.schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Ok(format!("{}\n(0 rows)", names.join(" | ")));
    }
    arrow_cast::pretty::pretty_format_batches(&result.batches)
        .map(|t| t.to_string())
        .map_err(|e| QueryError::Encode(e.to_string()))
}

/// CSV with a header row.
pub fn to_csv(result: &QueryResult) -> Result<String, QueryError> {
    let mut out = Vec::new();
    {
        let mut w = arrow_csv::WriterBuilder::new().with_header(true).build(&mut out);
        for b in &result.batches {
            w.write(b).map_err(|e| QueryError::Encode(e.to_string()))?;
        }
    }
    if result.batches.is_empty() {
        let names: Vec<&str> = result.schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Ok(format!("{}\n", names.join(",")));
    }
    String::from_utf8(out).map_err(|e| QueryError::Encode(e.to_string()))
}

/// Renders one cell as text (used by the quickstart report).
pub fn cell_text(batch: &RecordBatch, col: usize, row: usize) -> String {
    ArrayFormatter::try_new(batch.column(col).as_ref(), &FormatOptions::default())
        .map(|f| f.value(row).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn result() -> QueryResult {
        let schema =
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true), Field::new("n", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![Some(1), None])), Arc::new(StringArray::from(vec!["a", "b"]))],
        )
        .unwrap();
        QueryResult { schema, batches: vec![batch] }
    }

    #[test]
    fn json_keeps_duplicate_column_names_and_nulls() {
        let v = to_json(&result()).unwrap();
        assert_eq!(v["columns"], serde_json::json!(["n", "n"]));
        assert_eq!(v["rows"], serde_json::json!([[1, "a"], [null, "b"]]));
    }

    #[test]
    fn csv_has_a_header() {
        assert_eq!(to_csv(&result()).unwrap(), "n,n\n1,a\n,b\n");
    }
}
