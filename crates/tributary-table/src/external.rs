//! Changes other engines make through the Iceberg REST catalog: tables they
//! create, and commits of requirements and updates (PyIceberg's append,
//! Spark's overwrite, a schema change).
//!
//! A client writes its data files and manifests itself and sends the
//! metadata change. It lands on the same compare-and-swap of the catalog
//! row as every commit of Tributary's own, under the same per-table gate,
//! so neither side can lose the other's snapshot: the requirements are
//! checked against the table as it is when the swap is attempted, and a
//! swap lost to a concurrent commit checks them again on the new state.
//! A requirement that no longer holds refuses the commit
//! ([`TableError::RequirementFailed`]); the client refreshes and retries,
//! as the REST protocol prescribes.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{FormatVersion, Schema, SortOrder, TableMetadataBuilder, UnboundPartitionSpec};
use iceberg::{TableRequirement, TableUpdate};
use tributary_core::TableName;

use crate::error::{Result, TableError};
use crate::lake::{Lake, LoadedTable, next_version};

/// Swaps lost to concurrent commits before a change gives up (each re-checks
/// the requirements, so this only bounds a table committed to without pause).
const MAX_ATTEMPTS: u32 = 16;

/// Creates `name` with a client's schema, partitioning, sort order and
/// properties (field ids are assigned afresh, as the spec says).
pub async fn create(
    lake: &Lake,
    name: &TableName,
    schema: Schema,
    spec: Option<UnboundPartitionSpec>,
    order: Option<SortOrder>,
    mut properties: HashMap<String, String>,
) -> Result<LoadedTable> {
    if lake.try_load(name).await?.is_some() {
        return Err(TableError::AlreadyExists(name.clone()));
    }
    let location = format!("{}/{}/{}", lake.warehouse(), name.namespace, name.name);
    properties.entry("write.format.default".to_owned()).or_insert_with(|| "parquet".to_owned());
    let spec = spec.unwrap_or_else(|| UnboundPartitionSpec::builder().build());
    let metadata = TableMetadataBuilder::new(
        schema,
        spec,
        order.unwrap_or_else(SortOrder::unsorted_order),
        location.clone(),
        FormatVersion::V2,
        properties,
    )
    .and_then(iceberg::spec::TableMetadataBuilder::build)
    .map_err(|e| TableError::InvalidUpdate { table: name.clone(), reason: e.message().to_owned() })?
    .metadata;
    let path = lake.write_metadata(&location, 0, &metadata).await?;
    if !lake.store().create(name, &path).await? {
        return Err(TableError::AlreadyExists(name.clone()));
    }
    tracing::info!(table = %name, metadata = %path, "created table through the REST catalog");
    Ok(LoadedTable { name: name.clone(), location: path, metadata: Arc::new(metadata) })
}

/// Applies a client's `updates` to `name` if its `requirements` hold.
pub async fn apply(
    lake: &Lake,
    name: &TableName,
    requirements: &[TableRequirement],
    updates: &[TableUpdate],
) -> Result<LoadedTable> {
    for _ in 0..MAX_ATTEMPTS {
        let base = lake.load(name).await?;
        for r in requirements {
            r.check(Some(&base.metadata))
                .map_err(|e| TableError::RequirementFailed { table: name.clone(), reason: e.message().to_owned() })?;
        }
        let mut builder = (*base.metadata).clone().into_builder(Some(base.location.clone()));
        for u in updates {
            builder = u
                .clone()
                .apply(builder)
                .map_err(|e| TableError::InvalidUpdate { table: name.clone(), reason: e.message().to_owned() })?;
        }
        let built = builder
            .build()
            .map_err(|e| TableError::InvalidUpdate { table: name.clone(), reason: e.message().to_owned() })?;
        let path = lake.write_metadata(base.metadata.location(), next_version(&base.location), &built.metadata).await?;
        let swapped = {
            let gate = lake.gate(name);
            let _turn = gate.lock().await;
            lake.store().swap(name, &base.location, &path).await?
        };
        if swapped {
            crate::commit::delete_expired_metadata(lake, name, &built.expired_metadata_logs).await;
            return Ok(LoadedTable { name: name.clone(), location: path, metadata: Arc::new(built.metadata) });
        }
        if let Err(e) = lake.file_io().delete(&path).await {
            tracing::debug!(table = %name, file = %path, error = %e, "cannot delete a refused commit's metadata; orphan cleanup will");
        }
    }
    Err(TableError::CommitConflict { table: name.clone(), expected: "the table kept moving".to_owned() })
}
