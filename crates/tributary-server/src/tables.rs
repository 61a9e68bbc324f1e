//! `GET /v1/tables`: what the lake holds, without writing SQL — every
//! table with its columns (in the config's type names), partitioning, row
//! count and snapshot count, read from table metadata alone.
//! `GET /v1/tables/{ns.t}/snapshots`: a table's snapshots, newest first,
//! with the pipeline and positions each carries.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tributary_core::TableName;
use tributary_table::history::snapshot_log;
use tributary_table::schema::from_iceberg_schema;

use crate::api::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use tributary_core::config::Access;

pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let mut tables = Vec::new();
    let all = state.lake.list().await.map_err(ApiError::from)?;
    for name in all.into_iter().filter(|t| caller.can(&t.namespace, Access::Read)) {
        // A table dropped between the listing and the load is skipped.
        let Some(loaded) = state.lake.try_load(&name).await.map_err(ApiError::from)? else { continue };
        let meta = &loaded.metadata;
        let columns: Vec<Value> = from_iceberg_schema(meta.current_schema())
            .iter()
            .map(|f| json!({ "name": f.name, "type": f.ty.to_string(), "required": f.required }))
            .collect();
        let partition: Vec<String> = meta
            .default_partition_spec()
            .fields()
            .iter()
            .map(|p| {
                let source = meta.current_schema().name_by_field_id(p.source_id).unwrap_or("?");
                format!("{}({source})", p.transform)
            })
            .collect();
        tables.push(json!({
            "name": name.to_string(),
            "columns": columns,
            "partition": partition,
            "rows": loaded.total_records(),
            "snapshots": meta.snapshots().count(),
            "current_snapshot_id": meta.current_snapshot_id(),
            "metadata_location": loaded.location,
        }));
    }
    Ok(Json(json!({ "tables": tables })))
}

pub(crate) async fn snapshots(
    State(state): State<AppState>,
    caller: Caller,
    Path(table): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let name = TableName::parse(&table).map_err(ApiError::bad_request)?;
    caller.require(&name.namespace, Access::Read)?;
    let loaded = state.lake.load(&name).await.map_err(ApiError::from)?;
    let snapshots: Vec<Value> = snapshot_log(&loaded)
        .into_iter()
        .map(|s| {
            json!({
                "snapshot_id": s.snapshot_id,
                "parent_id": s.parent_id,
                "committed_at": chrono::DateTime::from_timestamp_millis(s.committed_at_ms).map(|t| t.to_rfc3339()),
                "operation": s.operation,
                "added_records": s.added_records,
                "total_records": s.total_records,
                "pipeline": s.pipeline,
                "epoch": s.epoch,
                // Positions as stored: a JSON object of position keys.
                "positions": s.positions.and_then(|p| serde_json::from_str::<Value>(&p).ok()),
            })
        })
        .collect();
    Ok(Json(
        json!({ "table": name.to_string(), "current_snapshot_id": loaded.current_snapshot_id(), "snapshots": snapshots }),
    ))
}
