//! Turns a request body into records: undoes its `Content-Encoding` (gzip or
//! zstd, bounded so that a small body cannot expand without limit), then
//! splits it by its declared format — NDJSON (one JSON value per line), or
//! `application/json` (one array of records, or one record) — and guesses
//! the format from the first byte only when none was declared.
//!
//! A line that is not JSON is not a request error: it is validated (and
//! quarantined) like any record, with its raw bytes, so one bad producer line
//! never blocks the good ones. Only a body whose framing cannot be recovered (an unterminated
//! JSON array) fails the whole request.

use std::io::Read;

use serde_json::value::RawValue;

use crate::error::IngestError;
use crate::validate::BOM;

/// One record as received.
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// The bytes as sent: parsed by validation, kept for quarantine.
    pub raw: &'a [u8],
}

/// How the records of a body are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFormat {
    /// One JSON value per line (`application/x-ndjson`, `application/jsonl`).
    Ndjson,
    /// `application/json`: a JSON array of records, or a single record.
    Json,
    /// Not declared: a JSON array if the body starts with `[`, else NDJSON.
    #[default]
    Sniff,
}

impl BodyFormat {
    /// The format a `Content-Type` declares; other types (such as curl's
    /// default form encoding) leave it to sniffing.
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        let essence = content_type.and_then(|t| t.split(';').next()).map(|t| t.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines") => {
                Self::Ndjson
            }
            Some("application/json") => Self::Json,
            _ => Self::Sniff,
        }
    }
}

/// A body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyEncoding {
    /// As sent.
    #[default]
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard.
    Zstd,
}

impl BodyEncoding {
    /// Parses a `Content-Encoding` header.
    pub fn from_header(value: Option<&str>) -> Result<Self, IngestError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "identity") => Ok(Self::Identity),
            Some("gzip" | "x-gzip") => Ok(Self::Gzip),
            Some("zstd") => Ok(Self::Zstd),
            Some(other) => Err(IngestError::UnsupportedEncoding(other.to_owned())),
        }
    }

    /// The body as sent, decompressed; more than `limit` bytes once
    /// decompressed is refused, like an uncompressed body of that size.
    pub fn decode(self, body: bytes::Bytes, limit: usize) -> Result<bytes::Bytes, IngestError> {
        let reader: Box<dyn Read + '_> = match self {
            Self::Identity => return Ok(body),
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
            Self::Zstd => Box::new(
                zstd::stream::read::Decoder::new(&body[..])
                    .map_err(|e| IngestError::MalformedBody(format!("cannot start zstd decoding: {e}")))?,
            ),
        };
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
        let read = reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| {
            IngestError::MalformedBody(format!("the body is not valid {self:?} data ({e}); check Content-Encoding"))
        })?;
        if read > limit {
            return Err(IngestError::TooLarge { limit });
        }
        Ok(out.into())
    }
}

/// Splits `body` into records by its declared `format`.
pub fn split_records(body: &[u8], format: BodyFormat) -> Result<Vec<RawRecord<'_>>, IngestError> {
    let body = body.strip_prefix(BOM).unwrap_or(body);
    let starts_array = || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    match format {
        BodyFormat::Ndjson => Ok(lines(body)),
        BodyFormat::Json if starts_array() => array(body),
        // One record, however it is laid out over lines.
        BodyFormat::Json => {
            Ok(if body.iter().all(u8::is_ascii_whitespace) { Vec::new() } else { vec![RawRecord { raw: body }] })
        }
        BodyFormat::Sniff if starts_array() => array(body),
        BodyFormat::Sniff => Ok(lines(body)),
    }
}

fn array(body: &[u8]) -> Result<Vec<RawRecord<'_>>, IngestError> {
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
        IngestError::MalformedBody(format!(
            "the body starts with '[' but is not a valid JSON array ({e}); send a JSON array, or NDJSON with \
             Content-Type: application/x-ndjson"
        ))
    })?;
    Ok(items.into_iter().map(|item| RawRecord { raw: item.get().as_bytes() }).collect())
}

fn lines(body: &[u8]) -> Vec<RawRecord<'_>> {
    body.split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
        .map(|line| RawRecord { raw: line })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_keeps_bad_lines_as_records() {
        let recs = split_records(b"{\"a\":1}\n\nnot json\r\n{\"a\":2}\n", BodyFormat::Sniff).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].raw, b"{\"a\":1}");
        assert_eq!(recs[1].raw, b"not json");
    }

    #[test]
    fn json_array_yields_each_element_with_its_raw_text() {
        let recs = split_records(b"  [{\"a\":1}, 7, {\"b\":\"x\"}]", BodyFormat::Sniff).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].raw, b"7");
        assert_eq!(recs[2].raw, b"{\"b\":\"x\"}");
    }

    #[test]
    fn broken_array_fails_the_request() {
        let err = split_records(b"[{\"a\":1},", BodyFormat::Sniff).unwrap_err();
        assert!(err.to_string().contains("not a valid JSON array"));
    }

    #[test]
    fn a_declared_ndjson_body_is_never_taken_for_an_array() {
        // The first line is a malformed record that happens to start with '['.
        let body = b"[broken\n{\"a\":1}\n";
        let recs = split_records(body, BodyFormat::from_content_type(Some("application/x-ndjson"))).unwrap();
        assert_eq!(recs.len(), 2);
        assert!(split_records(body, BodyFormat::Sniff).is_err());
        let recs = split_records(
            b"{\n  \"a\": 1\n}\n",
            BodyFormat::from_content_type(Some("application/json; charset=utf-8")),
        );
        assert_eq!(recs.unwrap().len(), 1, "a pretty-printed JSON object is one record");
        let form = BodyFormat::from_content_type(Some("application/x-www-form-urlencoded"));
        assert_eq!(form, BodyFormat::Sniff, "curl -d sends form encoding: sniff it");
    }

    #[test]
    fn compressed_bodies_are_decoded_within_the_limit() {
        use std::io::Write;
        let plain = b"{\"a\":1}\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = bytes::Bytes::from(gz.finish().unwrap());
        assert_eq!(BodyEncoding::Gzip.decode(gz.clone(), plain.len()).unwrap(), plain);
        assert!(matches!(BodyEncoding::Gzip.decode(gz, plain.len() - 1), Err(IngestError::TooLarge { .. })));
        let zst = bytes::Bytes::from(zstd::encode_all(&plain[..], 1).unwrap());
        assert_eq!(BodyEncoding::Zstd.decode(zst, plain.len()).unwrap(), plain);
        let err = BodyEncoding::Gzip.decode(bytes::Bytes::from_static(b"not gzip"), 100).unwrap_err();
        assert!(err.to_string().contains("check Content-Encoding"), "{err}");
        assert!(matches!(BodyEncoding::from_header(Some("br")), Err(IngestError::UnsupportedEncoding(_))));
        assert_eq!(BodyEncoding::from_header(Some("GZIP")).unwrap(), BodyEncoding::Gzip);
    }

    #[test]
    fn a_body_byte_order_mark_does_not_hide_an_array() {
        let recs = split_records(b"\xEF\xBB\xBF[{\"a\":1}]", BodyFormat::Sniff).unwrap();
        assert_eq!(recs[0].raw, b"{\"a\":1}");
    }

    #[test]
    fn empty_body_has_no_records() {
        assert!(split_records(b"  \n", BodyFormat::Sniff).unwrap().is_empty());
    }
}
