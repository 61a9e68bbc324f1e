//! `GET /v1/tables`: what the lake holds, without writing SQL — every
//! table with its columns (in the config's type names), partitioning, row
//! count and snapshot count, read from table metadata alone.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tributary_table::schema::from_iceberg_schema;

use crate::api::AppState;
use crate::error::ApiError;

pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut tables = Vec::new();
    for name in state.lake.list().await.map_err(ApiError::from)? {
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
