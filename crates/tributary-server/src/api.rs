//! HTTP routes: ingest, SQL, health and metrics.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use tributary_core::TableName;
use tributary_ingest::{IngestService, Receipt};
use tributary_query::QueryEngine;

use crate::error::ApiError;

/// Shared state of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Ingest side of every configured table.
    pub ingest: Arc<IngestService>,
    /// SQL engine.
    pub query: QueryEngine,
}

/// The router, separate from serving so tests can drive it directly.
pub fn app(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/tables/{table}/events", post(ingest))
        .route("/v1/sql", post(sql))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn ingest(
    State(state): State<AppState>,
    Path(table): Path<String>,
    body: Bytes,
) -> Result<Json<Receipt>, ApiError> {
    let name = TableName::parse(&table).map_err(ApiError::bad_request)?;
    let receipt = state.ingest.table(&name)?.ingest(body, "http").await?;
    Ok(Json(receipt))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

async fn sql(State(state): State<AppState>, body: Bytes) -> Result<Json<serde_json::Value>, ApiError> {
    let req: SqlRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body must be {{\"sql\": \"...\"}}: {e}")))?;
    let result = state.query.sql(&req.sql).await?;
    Ok(Json(tributary_query::output::to_json(&result)?))
}

async fn metrics() -> impl IntoResponse {
    let text = crate::metrics::handle().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
