//! The server's error type and the one place errors become HTTP statuses.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tributary_core::{Classify, ErrorClass};
use tributary_ingest::IngestError;
use tributary_query::QueryError;
use tributary_table::TableError;

/// Errors from starting or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}; pick a free address with {setting}")]
    Bind {
        /// The address.
        addr: String,
        /// Where it is set: `--http or [server] listen`, `--pg or [server] pg_listen`.
        setting: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Opening or preparing the lake failed.
    #[error(transparent)]
    Table(#[from] TableError),
    /// Starting ingestion failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The HTTP server failed.
    #[error("http server failed: {0}")]
    Io(#[from] std::io::Error),
    /// A source failed and stopped the process.
    #[error("stopped because {0}")]
    Fatal(String),
    /// The configuration cannot be served as it is (an exposed listener
    /// without tokens, an unreadable certificate).
    #[error("{0}")]
    Config(String),
}

impl Classify for ServerError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Bind { .. } | Self::Config(_) => ErrorClass::User,
            Self::Table(e) => e.class(),
            Self::Ingest(e) => e.class(),
            Self::Io(_) | Self::Fatal(_) => ErrorClass::External,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Table(e) => e.is_retryable(),
            Self::Ingest(e) => e.is_retryable(),
            Self::Bind { .. } | Self::Io(_) | Self::Fatal(_) | Self::Config(_) => false,
        }
    }
}

/// An error answered to an HTTP client: `{"error": {"message", "kind", "retryable"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retryable: bool,
}

impl ApiError {
    /// An error with `status` and `message`, not retryable.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retryable: false }
    }

    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn classified(e: &(impl Classify + std::fmt::Display), status: Option<StatusCode>) -> Self {
        let status = status.unwrap_or(match (e.class(), e.is_retryable()) {
            (ErrorClass::User, _) => StatusCode::BAD_REQUEST,
            (_, true) => StatusCode::SERVICE_UNAVAILABLE,
            (ErrorClass::External, false) => StatusCode::BAD_GATEWAY,
            (ErrorClass::Internal, false) => StatusCode::INTERNAL_SERVER_ERROR,
        });
        Self { status, message: e.to_string(), retryable: e.is_retryable() }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        let status = match &e {
            IngestError::UnknownTable(_) => Some(StatusCode::NOT_FOUND),
            IngestError::UnsupportedEncoding(_) => Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            IngestError::TooLarge { .. } => Some(StatusCode::PAYLOAD_TOO_LARGE),
            IngestError::KeyReused(_) => Some(StatusCode::UNPROCESSABLE_ENTITY),
            _ => None,
        };
        Self::classified(&e, status)
    }
}

impl From<crate::auth::Denied> for ApiError {
    fn from(e: crate::auth::Denied) -> Self {
        let status = match e {
            crate::auth::Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            crate::auth::Denied::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        Self::new(status, e.to_string())
    }
}

impl axum::response::IntoResponse for crate::auth::Denied {
    fn into_response(self) -> axum::response::Response {
        ApiError::from(self).into_response()
    }
}

impl From<TableError> for ApiError {
    fn from(e: TableError) -> Self {
        let status = match &e {
            TableError::NotFound(_) => Some(StatusCode::NOT_FOUND),
            _ => None,
        };
        Self::classified(&e, status)
    }
}

impl From<tributary_transform::TransformError> for ApiError {
    fn from(e: tributary_transform::TransformError) -> Self {
        match e {
            tributary_transform::TransformError::Table(t) => t.into(),
            other => Self::classified(&other, None),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let status = match &e {
            QueryError::ReadOnly { .. } => Some(StatusCode::FORBIDDEN),
            _ => None,
        };
        Self::classified(&e, status)
    }
}

/// A body the server would not read, answered in the same JSON shape as
/// every other error.
impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let message = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is larger than server.max_body_bytes; send smaller batches or raise the limit"
                    .to_owned()
            }
            _ => format!("cannot read the request body: {}", r.body_text()),
        };
        Self::new(r.status(), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.status.canonical_reason().unwrap_or("error").to_lowercase().replace(' ', "_");
        let body = json!({ "error": { "message": self.message, "kind": kind, "retryable": self.retryable } });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
