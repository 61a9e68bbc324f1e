//! The table layer: Iceberg catalog access, Arrow → Parquet writers and the
//! exactly-once commit protocol (see [`commit`] for the diagram).
//!
//! iceberg-rust provides the spec types, the file writers and the scans; this
//! crate owns the commit path because iceberg-rust's `Transaction::commit`
//! silently rebases a stale writer onto the newest snapshot, which would turn
//! a zombie writer into duplicated data.

pub mod catalog;
pub mod changes;
pub mod commit;
pub mod conform;
pub mod durable;
pub mod error;
pub mod external;
pub mod history;
pub mod lake;
pub mod maintain;
pub mod recovery;
mod rollback;
pub mod schema;
mod snapshot;
pub mod storage;
pub mod writer;

pub use commit::{Change, Outcome, PipelineStamp, commit, commit_with_retry, publish};
pub use error::{Result, TableError};
pub use lake::{Lake, LoadedTable};
pub use recovery::{PipelineState, last_pipeline_state, stamp_unless_zombie};
pub use rollback::{RolledBack, rollback};
pub use writer::write_data_files;

/// Re-exported so higher crates name Arrow and Iceberg types through us.
pub use iceberg;
