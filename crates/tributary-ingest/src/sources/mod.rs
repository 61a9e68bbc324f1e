//! Sources that pull records in (HTTP pushes through [`crate::TableIngest`]).

pub mod kafka;
mod kafka_commit;
mod kafka_context;
