//! Error classes shared by every crate's error type.
//!
//! Each library crate owns one `thiserror` enum; this module only gives them a
//! common way to say whose fault an error is and whether retrying can help, so
//! that the server maps errors to HTTP statuses in one place and retry loops
//! never retry a user mistake.

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request, the config or the data is wrong; the user must fix it.
    User,
    /// A dependency (catalog database, storage, broker) failed or refused.
    External,
    /// A bug or a broken invariant inside Tributary.
    Internal,
}

/// Implemented by every crate's error type.
pub trait Classify {
    /// Whose fault the error is.
    fn class(&self) -> ErrorClass;
    /// Whether the same operation may succeed if tried again.
    fn is_retryable(&self) -> bool;
}
