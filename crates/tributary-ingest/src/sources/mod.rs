//! Sources that pull records in (HTTP pushes through [`crate::TableIngest`]).

pub mod kafka;
