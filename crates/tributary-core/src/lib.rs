//! Shared vocabulary of Tributary: table names, field types, source positions,
//! configuration, error classes and metric names.
//!
//! This crate does no I/O so that every other crate — and every unit test —
//! can depend on it cheaply. Anything that touches a file, a socket or a
//! catalog belongs in a crate further down the data flow.

pub mod clock;
pub mod config;
pub mod cores;
pub mod error;
pub mod files;
pub mod kafka;
pub mod metrics;
pub mod positions;
pub mod schema;
pub mod table_name;

pub use clock::{Clock, SystemClock};
pub use error::{Classify, ErrorClass};
pub use positions::Positions;
pub use table_name::TableName;
