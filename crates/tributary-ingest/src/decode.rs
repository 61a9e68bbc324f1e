//! Splits a request body into records: NDJSON (one JSON value per line) or a
//! single JSON array.
//!
//! A line that is not JSON is not a request error: it is validated (and
//! quarantined) like any record, with its raw bytes, so one bad producer line
//! never blocks the good ones. Only a body whose framing cannot be recovered (an unterminated
//! JSON array) fails the whole request.

use serde_json::value::RawValue;

use crate::error::IngestError;

/// One record as received.
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// The bytes as sent: parsed by validation, kept for quarantine.
    pub raw: &'a [u8],
}

/// Splits `body` into records.
pub fn split_records(body: &[u8]) -> Result<Vec<RawRecord<'_>>, IngestError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_some_and(|i| body[i] == b'[') {
        let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
            IngestError::MalformedBody(format!(
                "the body starts with '[' but is not a valid JSON array ({e}); send a JSON array or NDJSON"
            ))
        })?;
        return Ok(items.into_iter().map(|item| RawRecord { raw: item.get().as_bytes() }).collect());
    }
    Ok(body
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
        .map(|line| RawRecord { raw: line })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_keeps_bad_lines_as_records() {
        let recs = split_records(b"{\"a\":1}\n\nnot json\r\n{\"a\":2}\n").unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].raw, b"{\"a\":1}");
        assert_eq!(recs[1].raw, b"not json");
    }

    #[test]
    fn json_array_yields_each_element_with_its_raw_text() {
        let recs = split_records(b"  [{\"a\":1}, 7, {\"b\":\"x\"}]").unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].raw, b"7");
        assert_eq!(recs[2].raw, b"{\"b\":\"x\"}");
    }

    #[test]
    fn broken_array_fails_the_request() {
        let err = split_records(b"[{\"a\":1},").unwrap_err();
        assert!(err.to_string().contains("not a valid JSON array"));
    }

    #[test]
    fn empty_body_has_no_records() {
        assert!(split_records(b"  \n").unwrap().is_empty());
    }
}
