//! Why a job run failed, and whether running it again can help.

use tributary_core::error::{Classify, ErrorClass};
use tributary_table::TableError;

/// A job run's failure.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The table layer failed (storage, catalog, a commit).
    #[error(transparent)]
    Table(#[from] TableError),
    /// DataFusion could not plan or run the job's query.
    #[error("job '{job}': {message}")]
    Query {
        /// The job.
        job: String,
        /// DataFusion's explanation.
        message: String,
    },
    /// The job's definition does not fit the tables it reads.
    #[error("job '{job}': {message}")]
    Definition {
        /// The job.
        job: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Another writer committed to the output while the run computed; the
    /// run's files are orphans and the next run starts from the new state.
    #[error("job '{0}': the output moved while the run computed; running again from the new state")]
    Raced(String),
    /// The process is stopping.
    #[error("shutting down")]
    ShuttingDown,
}

impl Classify for TransformError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Table(e) => e.class(),
            Self::Query { .. } | Self::Definition { .. } => ErrorClass::User,
            Self::Raced(_) | Self::ShuttingDown => ErrorClass::External,
        }
    }

    /// Whether the same run can succeed later without a config change:
    /// a query fails again on the same data, a race or a storage hiccup
    /// may not.
    fn is_retryable(&self) -> bool {
        match self {
            Self::Table(e) => e.is_retryable(),
            Self::Raced(_) => true,
            Self::Query { .. } | Self::Definition { .. } | Self::ShuttingDown => false,
        }
    }
}

impl TransformError {
    pub(crate) fn query(job: &str) -> impl FnOnce(datafusion::error::DataFusionError) -> Self + '_ {
        move |e| Self::Query { job: job.to_owned(), message: e.to_string() }
    }

    pub(crate) fn definition(job: &str, message: impl Into<String>) -> Self {
        Self::Definition { job: job.to_owned(), message: message.into() }
    }
}

/// A job result.
pub type Result<T> = std::result::Result<T, TransformError>;
