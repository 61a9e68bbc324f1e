//! The ingest pipeline's one error type.

use tributary_core::{Classify, ErrorClass, TableName};
use tributary_table::TableError;

/// Errors that fail a whole ingest request (bad records never do: they go to
/// quarantine).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The table is not configured for ingestion.
    #[error("table '{0}' is not configured for ingestion; declare it under [[tables]] in the config")]
    UnknownTable(TableName),
    /// The body cannot be split into records at all.
    #[error("malformed request body: {0}")]
    MalformedBody(String),
    /// The body's `Content-Encoding` is not one Tributary decodes.
    #[error("Content-Encoding '{0}' is not supported; send the body as gzip, zstd or uncompressed")]
    UnsupportedEncoding(String),
    /// The body, once decompressed, is larger than the server accepts.
    #[error("the decompressed body is larger than {limit} bytes; send smaller batches or raise server.max_body_bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Preparing a table at start failed (creating, evolving or reading it).
    #[error(transparent)]
    Table(TableError),
    /// Committing the batch failed; nothing of it is visible.
    #[error("commit failed, nothing was written: {0}")]
    Commit(#[from] TableError),
    /// The request's rows are committed but its rejects are not in the
    /// quarantine table.
    #[error(
        "the request's rows were committed but its rejects could not be quarantined ({0}); retry the request: its rows count as duplicates"
    )]
    RejectsNotQuarantined(String),
    /// Storage or the catalog failed in a way a retry can fix; nothing of
    /// the request was written.
    #[error("nothing was written: {0}; retry the request")]
    Unavailable(String),
    /// The batch was dropped because another writer committed its input.
    #[error("batch for '{0}' was superseded by another writer; nothing was written, retry the request")]
    Superseded(TableName),
    /// A pull source (Kafka) failed or is misconfigured.
    #[error("{0}")]
    Source(String),
    /// The pipeline is shutting down and takes no more records.
    #[error("server is shutting down; retry against another instance")]
    ShuttingDown,
    /// A bug: a batch did not match its own schema.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Classify for IngestError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::UnknownTable(_) | Self::MalformedBody(_) | Self::UnsupportedEncoding(_) | Self::TooLarge { .. } => {
                ErrorClass::User
            }
            Self::Commit(e) | Self::Table(e) => e.class(),
            Self::Superseded(_)
            | Self::ShuttingDown
            | Self::Source(_)
            | Self::RejectsNotQuarantined(_)
            | Self::Unavailable(_) => ErrorClass::External,
            Self::Internal(_) => ErrorClass::Internal,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Commit(e) | Self::Table(e) => e.is_retryable(),
            Self::Superseded(_) | Self::ShuttingDown | Self::RejectsNotQuarantined(_) | Self::Unavailable(_) => true,
            _ => false,
        }
    }
}
