//! The query crate's one error type.

use datafusion::error::DataFusionError;
use tributary_core::{Classify, ErrorClass};

/// A failed query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// DataFusion refused or failed the statement; the message is DataFusion's.
    #[error("{0}")]
    Sql(#[from] DataFusionError),
    /// The statement would write, read server files or change settings.
    #[error("{statement} is not allowed: {hint}")]
    ReadOnly {
        /// The refused statement's kind, e.g. `COPY`.
        statement: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// A value bound to a `$n` placeholder does not fit it.
    #[error("{0}")]
    Parameter(String),
    /// The query runtime is gone (the process is shutting down).
    #[error("query engine is shutting down")]
    ShuttingDown,
    /// Results could not be encoded.
    #[error("cannot encode results: {0}")]
    Encode(String),
}

impl Classify for QueryError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Sql(e) => match e.find_root() {
                DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) | DataFusionError::External(_) => {
                    ErrorClass::External
                }
                DataFusionError::Internal(_) => ErrorClass::Internal,
                _ => ErrorClass::User,
            },
            Self::ReadOnly { .. } | Self::Parameter(_) => ErrorClass::User,
            Self::ShuttingDown => ErrorClass::External,
            Self::Encode(_) => ErrorClass::Internal,
        }
    }

    fn is_retryable(&self) -> bool {
        matches!(self.class(), ErrorClass::External)
    }
}
