//! Sources that pull records in (HTTP pushes through [`crate::TableIngest`]).

pub mod files;
pub mod kafka;
