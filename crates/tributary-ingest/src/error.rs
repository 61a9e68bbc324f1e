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
    /// The `Idempotency-Key` header is not a usable key.
    #[error("{0}")]
    InvalidIdempotencyKey(String),
    /// An `Idempotency-Key` already answered a request with another body.
    #[error(
        "Idempotency-Key '{0}' was already used for a request with a different body; send a new request under a new key"
    )]
    KeyReused(String),
    /// Preparing a table at start failed (creating, evolving or reading it).
    #[error(transparent)]
    Table(TableError),
    /// Committing the batch failed; nothing of it is visible.
    #[error("commit failed, nothing was written: {0}")]
    Commit(#[from] TableError),
    /// The request's rejects are in the quarantine table but its rows were
    /// not committed.
    #[error(
        "the request's rejects were quarantined but its rows were not committed ({0}); retry the request, with the same Idempotency-Key so that its rejects are not quarantined twice"
    )]
    OnlyRejectsCommitted(String),
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
    /// The dedup index's files under the data directory failed (a full
    /// disk, permissions); nothing of the batch was written.
    #[error(
        "the dedup index's local files failed: {0}; free space or fix permissions under the data directory, then retry"
    )]
    DedupStorage(String),
    /// A bug: a batch did not match its own schema.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    /// The same error for another client waiting on the same request (the
    /// error is not `Clone`: some variants wrap their source).
    pub fn for_another_client(&self) -> Self {
        match self {
            Self::KeyReused(k) => Self::KeyReused(k.clone()),
            Self::Superseded(t) => Self::Superseded(t.clone()),
            Self::OnlyRejectsCommitted(m) => Self::OnlyRejectsCommitted(m.clone()),
            Self::Unavailable(m) => Self::Unavailable(m.clone()),
            Self::Internal(m) => Self::Internal(m.clone()),
            Self::ShuttingDown => Self::ShuttingDown,
            e if e.is_retryable() => Self::Unavailable(e.to_string()),
            e => Self::Internal(e.to_string()),
        }
    }
}

impl Classify for IngestError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::UnknownTable(_)
            | Self::MalformedBody(_)
            | Self::UnsupportedEncoding(_)
            | Self::TooLarge { .. }
            | Self::InvalidIdempotencyKey(_)
            | Self::KeyReused(_) => ErrorClass::User,
            Self::Commit(e) | Self::Table(e) => e.class(),
            Self::Superseded(_)
            | Self::ShuttingDown
            | Self::Source(_)
            | Self::OnlyRejectsCommitted(_)
            | Self::Unavailable(_)
            | Self::DedupStorage(_) => ErrorClass::External,
            Self::Internal(_) => ErrorClass::Internal,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Commit(e) | Self::Table(e) => e.is_retryable(),
            Self::Superseded(_)
            | Self::ShuttingDown
            | Self::OnlyRejectsCommitted(_)
            | Self::Unavailable(_)
            | Self::DedupStorage(_) => true,
            _ => false,
        }
    }
}
