//! Rows as JSON objects: how a job's refused rows are kept in quarantine.

use arrow_array::RecordBatch;

use crate::error::Result;

/// Each row of `batch` as one JSON object.
pub(crate) fn rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut writer = arrow_json::LineDelimitedWriter::new(&mut buf);
    writer.write(batch).map_err(|e| tributary_table::TableError::Internal(format!("row as JSON: {e}")))?;
    writer.finish().map_err(|e| tributary_table::TableError::Internal(format!("row as JSON: {e}")))?;
    Ok(buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect())
}
