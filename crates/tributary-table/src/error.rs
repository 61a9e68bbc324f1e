//! The table layer's one error type.

use tributary_core::{Classify, ErrorClass, TableName};

/// Result alias for the table layer.
pub type Result<T, E = TableError> = std::result::Result<T, E>;

/// Everything that can go wrong between a record batch and a published snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// The table is not in the catalog.
    #[error("table '{0}' does not exist; declare it under [[tables]] in the config")]
    NotFound(TableName),
    /// Another writer published a new metadata file first.
    #[error("commit to '{table}' lost the race: the table moved on from {expected}")]
    CommitConflict {
        /// Table being committed.
        table: TableName,
        /// The metadata location this commit was based on.
        expected: String,
    },
    /// A change's validation failed on the table it would land on: e.g. a
    /// file a compaction or an overwrite removes was removed by another
    /// commit meanwhile. Plan the change again from the current table.
    #[error("change to '{table}' refused: {reason}; plan it again from the current table")]
    ChangeConflict {
        /// Table concerned.
        table: TableName,
        /// Which rule failed.
        reason: String,
    },
    /// A snapshot named by the user is not one the operation can use.
    #[error("table '{table}' cannot go to snapshot {snapshot_id}: {reason}")]
    UnknownSnapshot {
        /// Table concerned.
        table: TableName,
        /// The snapshot named.
        snapshot_id: i64,
        /// Why, and what to name instead.
        reason: String,
    },
    /// A table of this name exists already.
    #[error("table '{0}' already exists")]
    AlreadyExists(TableName),
    /// A client's commit names a state of the table that no longer holds
    /// (another commit landed first): it must refresh and try again.
    #[error("commit to '{table}' refused: {reason}; refresh the table and try again")]
    RequirementFailed {
        /// Table concerned.
        table: TableName,
        /// The requirement that failed.
        reason: String,
    },
    /// A client's change cannot be applied to the table (an unknown field,
    /// a schema that does not build).
    #[error("change to '{table}' is invalid: {reason}")]
    InvalidUpdate {
        /// Table concerned.
        table: TableName,
        /// What is wrong.
        reason: String,
    },
    /// The config asks for a schema change that would break existing data.
    #[error("schema change for '{table}' refused: {reason}")]
    BreakingSchemaChange {
        /// Table whose schema would break.
        table: TableName,
        /// What is breaking and how to fix it.
        reason: String,
    },
    /// The record batch does not fit the table.
    #[error("invalid data for '{table}': {reason}")]
    InvalidData {
        /// Table being written.
        table: TableName,
        /// What is wrong.
        reason: String,
    },
    /// The catalog database failed.
    #[error("catalog database error during {op}: {source}")]
    Catalog {
        /// What we were doing.
        op: &'static str,
        /// The driver error.
        #[source]
        source: Box<sqlx::Error>,
    },
    /// iceberg-rust failed (storage, Avro, Parquet, metadata).
    #[error("iceberg error during {op}: {source}")]
    Iceberg {
        /// What we were doing.
        op: &'static str,
        /// The library error.
        #[source]
        source: Box<iceberg::Error>,
    },
    /// The catalog points at metadata we cannot understand.
    #[error("corrupt table metadata for '{table}': {reason}")]
    Corrupt {
        /// Table concerned.
        table: TableName,
        /// What is wrong.
        reason: String,
    },
    /// The catalog swap may or may not have happened (the connection broke
    /// around it) and reading the table back failed too. Whether snapshot
    /// `snapshot_id` is in the table decides; [`crate::Lake::landed`] asks.
    #[error(
        "commit to '{table}' has an unknown outcome ({reason}); snapshot {snapshot_id} may or may not be in the table"
    )]
    CommitUnknown {
        /// Table being committed.
        table: TableName,
        /// The snapshot the commit would have added.
        snapshot_id: i64,
        /// What broke.
        reason: String,
    },
    /// The configuration cannot be used (bad URL, unreachable path).
    #[error("{0}")]
    Config(String),
    /// A task of ours failed in a way no input explains (a panic).
    #[error("internal error: {0}")]
    Internal(String),
    /// A failpoint simulated a crash at this instant (tests only).
    #[error("failpoint {0} fired")]
    Injected(&'static str),
}

impl TableError {
    /// Wraps an iceberg-rust error with what we were doing.
    pub fn iceberg(op: &'static str) -> impl FnOnce(iceberg::Error) -> Self {
        move |source| Self::Iceberg { op, source: Box::new(source) }
    }

    /// Wraps a catalog database error with what we were doing.
    pub fn catalog(op: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Catalog { op, source: Box::new(source) }
    }
}

impl Classify for TableError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::NotFound(_)
            | Self::AlreadyExists(_)
            | Self::RequirementFailed { .. }
            | Self::InvalidUpdate { .. }
            | Self::UnknownSnapshot { .. }
            | Self::BreakingSchemaChange { .. }
            | Self::InvalidData { .. }
            | Self::Config(_) => ErrorClass::User,
            Self::CommitConflict { .. }
            | Self::CommitUnknown { .. }
            | Self::ChangeConflict { .. }
            | Self::Catalog { .. }
            | Self::Iceberg { .. } => ErrorClass::External,
            Self::Corrupt { .. } | Self::Internal(_) | Self::Injected(_) => ErrorClass::Internal,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::CommitConflict { .. } | Self::CommitUnknown { .. } | Self::ChangeConflict { .. } => true,
            Self::Catalog { source, .. } => matches!(
                **source,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Database(_)
            ),
            Self::Iceberg { source, .. } => source.retryable(),
            _ => false,
        }
    }
}
