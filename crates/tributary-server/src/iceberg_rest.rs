//! The Iceberg REST catalog under `/iceberg`, so that PyIceberg, DuckDB,
//! Spark and Trino read the lake, and write it, without Tributary's own
//! clients: `RestCatalog("tributary", uri="http://ADDR/iceberg")`.
//!
//! Reads hand out the table's current metadata; the client then reads
//! manifests and data files straight from the warehouse (for an S3
//! warehouse, the response's `config` carries the `s3.*` settings).
//! Commits (`POST …/tables/{t}`) go through `tributary_table::external`:
//! the same compare-and-swap and per-table gate as ingestion, so neither
//! side loses the other's snapshot, and a requirement that no longer holds
//! is a 409 `CommitFailedException` the client retries after a refresh.
//! Errors follow the spec: `{"error": {"message", "type", "code"}}`.
//! Access: loading needs `read` on the namespace, committing `write`,
//! creating or dropping tables and namespaces `admin` (see `auth`).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use iceberg::spec::{Schema, SortOrder, UnboundPartitionSpec};
use iceberg::{TableRequirement, TableUpdate};
use serde::Deserialize;
use serde_json::{Value, json};
use tributary_core::TableName;
use tributary_core::table_name::is_identifier;
use tributary_table::{LoadedTable, TableError, external};

use crate::api::AppState;
use crate::auth::{Caller, Denied};
use tributary_core::config::Access;

/// The routes, nested under `/iceberg` by [`crate::app`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/config", get(config))
        .route("/v1/namespaces", get(namespaces).post(create_namespace))
        .route("/v1/namespaces/{ns}", get(namespace).head(namespace))
        .route("/v1/namespaces/{ns}/tables", get(tables).post(create_table))
        .route("/v1/namespaces/{ns}/tables/{table}", get(load).head(load).post(commit).delete(drop))
        .fallback(|| async {
            RestError::new(
                StatusCode::NOT_FOUND,
                "NotFoundException",
                "no such Iceberg REST endpoint under /iceberg/v1",
            )
        })
}

/// A REST catalog error, in the spec's shape.
#[derive(Debug)]
pub struct RestError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl RestError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "message": self.message, "type": self.kind, "code": self.status.as_u16() } });
        (self.status, Json(body)).into_response()
    }
}

impl From<TableError> for RestError {
    fn from(e: TableError) -> Self {
        let (status, kind) = match &e {
            TableError::NotFound(_) => (StatusCode::NOT_FOUND, "NoSuchTableException"),
            TableError::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExistsException"),
            TableError::RequirementFailed { .. } | TableError::CommitConflict { .. } => {
                (StatusCode::CONFLICT, "CommitFailedException")
            }
            TableError::InvalidUpdate { .. } | TableError::BreakingSchemaChange { .. } | TableError::Config(_) => {
                (StatusCode::BAD_REQUEST, "BadRequestException")
            }
            // The swap may or may not have happened: the client must not
            // assume it failed.
            TableError::CommitUnknown { .. } => (StatusCode::SERVICE_UNAVAILABLE, "CommitStateUnknownException"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceFailureException"),
        };
        Self::new(status, kind, e.to_string())
    }
}

impl From<Denied> for RestError {
    fn from(e: Denied) -> Self {
        match e {
            Denied::Unauthenticated(m) => Self::new(StatusCode::UNAUTHORIZED, "NotAuthorizedException", m),
            Denied::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "ForbiddenException", m),
        }
    }
}

type Rest<T> = Result<T, RestError>;

/// The caller, who must have `need` on `namespace`.
fn allowed(caller: Result<Caller, Denied>, namespace: &str, need: Access) -> Rest<Caller> {
    let caller = caller?;
    caller.require(namespace, need)?;
    Ok(caller)
}

/// A one-level namespace: Tributary's are `raw`, `cleansed`, ….
fn namespace_of(ns: &str) -> Rest<String> {
    if is_identifier(ns) {
        Ok(ns.to_owned())
    } else {
        Err(RestError::bad_request(format!(
            "namespace '{ns}': Tributary namespaces are one lowercase identifier (letters, digits, '_')"
        )))
    }
}

fn table_of(ns: &str, table: &str) -> Rest<TableName> {
    TableName::parse(&format!("{}.{table}", namespace_of(ns)?)).map_err(RestError::bad_request)
}

async fn config() -> Json<Value> {
    Json(json!({ "defaults": {}, "overrides": {} }))
}

async fn namespaces(State(state): State<AppState>, caller: Result<Caller, Denied>) -> Rest<Json<Value>> {
    let caller = caller?;
    let all = state.lake.store().namespaces().await?;
    let list: Vec<Value> = all.iter().filter(|ns| caller.can(ns, Access::Read)).map(|ns| json!([ns])).collect();
    Ok(Json(json!({ "namespaces": list })))
}

#[derive(Deserialize)]
struct CreateNamespace {
    namespace: Vec<String>,
    #[serde(default)]
    properties: HashMap<String, String>,
}

async fn create_namespace(
    State(state): State<AppState>,
    caller: Result<Caller, Denied>,
    Json(body): Json<CreateNamespace>,
) -> Rest<Json<Value>> {
    let [ns] = body.namespace.as_slice() else {
        return Err(RestError::bad_request("a namespace is one level, e.g. [\"analytics\"]"));
    };
    let ns = namespace_of(ns)?;
    allowed(caller, &ns, Access::Admin)?;
    if state.lake.store().namespaces().await?.contains(&ns) {
        return Err(RestError::new(StatusCode::CONFLICT, "AlreadyExistsException", format!("namespace '{ns}' exists")));
    }
    state.lake.store().create_namespace(&ns).await?;
    Ok(Json(json!({ "namespace": [ns], "properties": body.properties })))
}

async fn namespace(
    State(state): State<AppState>,
    caller: Result<Caller, Denied>,
    Path(ns): Path<String>,
) -> Rest<Json<Value>> {
    let ns = namespace_of(&ns)?;
    allowed(caller, &ns, Access::Read)?;
    if !state.lake.store().namespaces().await?.contains(&ns) {
        return Err(RestError::new(
            StatusCode::NOT_FOUND,
            "NoSuchNamespaceException",
            format!("namespace '{ns}' does not exist"),
        ));
    }
    Ok(Json(json!({ "namespace": [ns], "properties": {} })))
}

async fn tables(
    State(state): State<AppState>,
    caller: Result<Caller, Denied>,
    Path(ns): Path<String>,
) -> Rest<Json<Value>> {
    let ns = namespace_of(&ns)?;
    allowed(caller, &ns, Access::Read)?;
    let identifiers: Vec<Value> = state
        .lake
        .list()
        .await?
        .into_iter()
        .filter(|t| t.namespace == ns)
        .map(|t| json!({ "namespace": [t.namespace], "name": t.name }))
        .collect();
    Ok(Json(json!({ "identifiers": identifiers })))
}

/// The `LoadTableResult` of `table`.
fn loaded(state: &AppState, table: &LoadedTable) -> Rest<Json<Value>> {
    let config = tributary_table::storage::client_properties(&state.warehouse)?;
    Ok(Json(json!({ "metadata-location": table.location, "metadata": &*table.metadata, "config": config })))
}

async fn load(
    State(state): State<AppState>,
    caller: Result<Caller, Denied>,
    Path((ns, table)): Path<(String, String)>,
) -> Rest<Json<Value>> {
    let name = table_of(&ns, &table)?;
    allowed(caller, &name.namespace, Access::Read)?;
    let table = state.lake.load(&name).await?;
    loaded(&state, &table)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CreateTable {
    name: String,
    schema: Schema,
    #[serde(default)]
    partition_spec: Option<UnboundPartitionSpec>,
    #[serde(default)]
    write_order: Option<SortOrder>,
    #[serde(default)]
    properties: HashMap<String, String>,
    #[serde(default)]
    stage_create: bool,
}

async fn create_table(
    State(state): State<AppState>,
    caller: Result<Caller, Denied>,
    Path(ns): Path<String>,
    body: Result<Json<CreateTable>, axum::extract::rejection::JsonRejection>,
) -> Rest<Json<Value>> {
    allowed(caller, &namespace_of(&ns)?, Access::Admin)?;
    let Json(body) = body.map_err(|e| RestError::bad_request(format!("create table: {}", e.body_text())))?;
    if body.stage_create {
        return Err(RestError::new(
            StatusCode::NOT_ACCEPTABLE,
            "UnsupportedOperationException",
            "staged creation is not supported; create the table, then commit to it",
        ));
    }
    let name = table_of(&ns, &body.name)?;
    state.lake.store().create_namespace(&name.namespace).await?;
    let table =
        external::create(&state.lake, &name, body.schema, body.partition_spec, body.write_order, body.properties)
            .await?;
    loaded(&state, &table)
}

#[derive(Deserialize)]
struct Commit {
    #[serde(default)]
    requirements: Vec<TableRequirement>,
    #[serde(default)]
    updates: Vec<TableUpdate>,
}

async fn commit(
    State(state): State<AppState>,
    caller: Result<Caller, Denied>,
    Path((ns, table)): Path<(String, String)>,
    body: Result<Json<Commit>, axum::extract::rejection::JsonRejection>,
) -> Rest<Json<Value>> {
    let name = table_of(&ns, &table)?;
    allowed(caller, &name.namespace, Access::Write)?;
    let Json(body) = body.map_err(|e| RestError::bad_request(format!("commit: {}", e.body_text())))?;
    let table = external::apply(&state.lake, &name, &body.requirements, &body.updates).await?;
    Ok(Json(json!({ "metadata-location": table.location, "metadata": &*table.metadata })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DropOptions {
    #[serde(default)]
    purge_requested: bool,
}

async fn drop(
    State(state): State<AppState>,
    caller: Result<Caller, Denied>,
    Path((ns, table)): Path<(String, String)>,
    Query(opts): Query<DropOptions>,
) -> Rest<StatusCode> {
    let name = table_of(&ns, &table)?;
    allowed(caller, &name.namespace, Access::Admin)?;
    state.lake.drop_table(&name, opts.purge_requested).await?;
    Ok(StatusCode::NO_CONTENT)
}
