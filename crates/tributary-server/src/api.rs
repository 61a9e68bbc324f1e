//! HTTP routes: ingest, SQL, the table listing, liveness, readiness and
//! metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tributary_core::TableName;
use tributary_ingest::{Body, BodyEncoding, BodyFormat, IngestService, Receipt};
use tributary_query::QueryEngine;
use tributary_table::Lake;

use crate::auth::Caller;
use crate::error::ApiError;
use tributary_core::config::Access;

/// Shared state of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Ingest side of every configured table.
    pub ingest: Arc<IngestService>,
    /// SQL engine.
    pub query: QueryEngine,
    /// The lake, for readiness and listings.
    pub lake: Lake,
    /// The zone-job scheduler, when the config has jobs.
    pub jobs: Option<tributary_transform::schedule::Scheduler>,
    /// The warehouse, whose client settings the REST catalog hands out.
    pub warehouse: tributary_core::config::Warehouse,
    /// Who may do what.
    pub auth: Arc<crate::auth::Auth>,
}

/// Named in the answer to an unknown path, so a typo is fixed without docs.
const ENDPOINTS: &str = "the endpoints are POST /v1/tables/{namespace.table}/events, POST /v1/sql, GET /v1/tables, \
                         GET /v1/tables/{namespace.table}/snapshots, GET /v1/jobs, the Iceberg REST catalog under /iceberg/v1/, GET /healthz, GET /readyz and GET /metrics";

/// `GET /v1/jobs`: every zone job's state, in dependency order.
async fn jobs(State(state): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    let jobs = match &state.jobs {
        Some(scheduler) => scheduler.statuses().await?,
        None => Vec::new(),
    };
    let jobs: Vec<_> = jobs
        .into_iter()
        .filter(|j| j.output.split_once('.').is_some_and(|(ns, _)| caller.can(ns, Access::Read)))
        .collect();
    Ok(Json(serde_json::json!({ "jobs": jobs })))
}

/// The router, separate from serving so tests can drive it directly.
pub fn app(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/tables/{table}/events", post(ingest))
        .route("/v1/sql", post(sql))
        .route("/v1/tables", get(crate::tables::list))
        .route("/v1/tables/{table}/snapshots", get(crate::tables::snapshots))
        .route("/v1/jobs", get(jobs))
        .nest("/iceberg", crate::iceberg_rest::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, format!("no such endpoint; {ENDPOINTS}")) })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed here; {ENDPOINTS}"))
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn ingest(
    State(state): State<AppState>,
    Path(table): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Receipt>, ApiError> {
    let name = TableName::parse(&table).map_err(ApiError::bad_request)?;
    caller.require(&name.namespace, Access::Write)?;
    let body = body.map_err(ApiError::from)?;
    let header = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let body = Body {
        bytes: body,
        format: BodyFormat::from_content_type(header(header::CONTENT_TYPE)),
        encoding: BodyEncoding::from_header(header(header::CONTENT_ENCODING))?,
        idempotency_key: match headers.get("idempotency-key") {
            None => None,
            Some(v) => Some(v.to_str().map(str::to_owned).map_err(|_| {
                ApiError::bad_request("Idempotency-Key must be visible ASCII characters (a UUID is a good choice)")
            })?),
        },
    };
    let receipt = state.ingest.table(&name)?.ingest(body, "http").await?;
    Ok(Json(receipt))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

async fn sql(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map_err(ApiError::from)?;
    let req: SqlRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body must be {{\"sql\": \"...\"}}: {e}")))?;
    let checked = tributary_query::check(&req.sql)?;
    caller.require_all(&checked.namespaces, Access::Read)?;
    let result = state.query.run(checked, &[]).await?;
    Ok(Json(tributary_query::output::to_json(&result)?))
}

/// 200 when the catalog answers and every source can reach what it reads
/// from; 503 otherwise. Each component is listed with the reason it is not
/// ready. `/healthz` only says the process is alive.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let mut components = serde_json::Map::new();
    let catalog = match state.lake.store().ping(Duration::from_secs(2)).await {
        Ok(()) => json!({ "ready": true }),
        Err(e) => json!({ "ready": false, "reason": e.to_string() }),
    };
    components.insert("catalog".to_owned(), catalog);
    for (name, status) in state.ingest.health().snapshot() {
        components.insert(name, json!(status));
    }
    let ready = components.values().all(|c| c["ready"] == true);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": ready, "components": components })))
}

async fn metrics() -> impl IntoResponse {
    let text = crate::metrics::handle().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
