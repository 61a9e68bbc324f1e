//! The lake: a catalog store plus a warehouse, and the tables in them.
//!
//! [`Lake`] is the one entry point other crates use to create, evolve and load
//! tables. Every table state is a [`LoadedTable`]: the metadata together with
//! the location it was read from. That location is the *explicit base* a
//! commit must name in its compare-and-swap, which is how a stale writer is
//! caught instead of being silently rebased.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use iceberg::TableIdent;
use iceberg::io::FileIO;
use iceberg::spec::{
    FormatVersion, PartitionSpec, Schema, SortOrder, TableMetadata, TableMetadataBuilder, TableMetadataRef,
    UnboundPartitionSpec,
};
use iceberg::table::Table;
use tributary_core::TableName;
use tributary_core::config::{TableDef, Warehouse};
use tributary_core::schema::Field;
use uuid::Uuid;

use crate::catalog::CatalogStore;

/// The table property bounding the metadata log, and our value: every
/// metadata file kept is as large as the current one, and a busy table's is
/// megabytes, so ten, not Iceberg's default hundred.
const PREVIOUS_VERSIONS_MAX: &str = "write.metadata.previous-versions-max";
const PREVIOUS_VERSIONS: &str = "10";
use crate::error::{Result, TableError};
use crate::schema::{evolve, lineage_fields, quarantine_fields, to_iceberg_schema, to_partition_spec};

/// A table as read from the catalog at one instant.
#[derive(Debug, Clone)]
pub struct LoadedTable {
    /// Table name.
    pub name: TableName,
    /// The metadata file this state was read from.
    pub location: String,
    /// The parsed metadata.
    pub metadata: TableMetadataRef,
}

impl LoadedTable {
    /// The id of the current snapshot, if any data was ever committed.
    pub fn current_snapshot_id(&self) -> Option<i64> {
        self.metadata.current_snapshot_id()
    }

    /// The current schema as Arrow, with Iceberg field ids: what batches
    /// written to the table are in.
    pub fn arrow_schema(&self) -> Result<arrow_schema::SchemaRef> {
        let arrow = iceberg::arrow::schema_to_arrow_schema(self.metadata.current_schema())
            .map_err(TableError::iceberg("arrow schema"))?;
        Ok(Arc::new(arrow))
    }

    /// Rows in the current snapshot, from its summary (0 for an empty table).
    pub fn total_records(&self) -> u64 {
        self.metadata
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get("total-records")?.parse().ok())
            .unwrap_or(0)
    }
}

/// Catalog store + warehouse storage.
#[derive(Debug, Clone)]
pub struct Lake {
    store: CatalogStore,
    file_io: FileIO,
    warehouse: String,
    lister: crate::storage::Lister,
    /// Per table, held by a commit from its last base read to its swap, so
    /// that this process's commits to one table take turns ([`Lake::gate`]).
    gates: Arc<std::sync::Mutex<HashMap<TableName, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Lake {
    /// Opens the catalog and the warehouse (a local directory, created if
    /// need be, or an S3 bucket, checked to be reachable).
    pub async fn open(catalog_url: &str, catalog_name: &str, warehouse: &Warehouse) -> Result<Self> {
        let (file_io, warehouse, lister) = crate::storage::open(warehouse).await?;
        let store = CatalogStore::connect(catalog_url, catalog_name).await?;
        Ok(Self { store, file_io, warehouse, lister, gates: Arc::default() })
    }

    /// The commit gate of `table` in this process. Ingest holds it for each
    /// commit attempt; maintenance holds it from reading its base to its
    /// swap. Without it, a maintenance commit (which takes longer to build)
    /// loses every race to an ingest committing several times a second and
    /// never lands. Other processes still race through the catalog swap.
    pub fn gate(&self, table: &TableName) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.gates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        gates.entry(table.clone()).or_default().clone()
    }

    /// Lists the files under a location of the warehouse's storage.
    pub fn lister(&self) -> &crate::storage::Lister {
        &self.lister
    }

    /// The storage every data and metadata file goes through.
    pub fn file_io(&self) -> &FileIO {
        &self.file_io
    }

    /// The catalog store.
    pub fn store(&self) -> &CatalogStore {
        &self.store
    }

    /// Warehouse root as a URL.
    pub fn warehouse(&self) -> &str {
        &self.warehouse
    }

    /// Creates the table of `def` (user columns plus lineage) or evolves it.
    pub async fn ensure_table(&self, def: &TableDef) -> Result<LoadedTable> {
        let mut fields = def.fields.clone();
        fields.extend(lineage_fields());
        self.ensure(&def.name, &fields, |schema| to_partition_spec(&def.partition, schema)).await
    }

    /// Creates the table a zone job derives, with exactly `fields` (no
    /// lineage columns of its own) partitioned by `partition`, or evolves it
    /// additively.
    pub async fn ensure_derived(
        &self,
        name: &TableName,
        fields: &[Field],
        partition: &[tributary_core::schema::PartitionField],
    ) -> Result<LoadedTable> {
        self.ensure(name, fields, |schema| to_partition_spec(partition, schema)).await
    }

    /// The live data files of `table`'s current snapshot, with their
    /// partition spec ids.
    pub async fn live_files(&self, table: &LoadedTable) -> Result<Vec<(i32, iceberg::spec::DataFile)>> {
        match table.metadata.current_snapshot() {
            Some(snapshot) => crate::snapshot::live_files(self, table, snapshot).await,
            None => Ok(Vec::new()),
        }
    }

    /// Creates or evolves the quarantine table for `table`'s rejects.
    pub async fn ensure_quarantine(&self, table: &TableName) -> Result<LoadedTable> {
        self.ensure_quarantine_table(&table.quarantine()).await
    }

    /// Creates or evolves the quarantine table `name`.
    pub async fn ensure_quarantine_table(&self, name: &TableName) -> Result<LoadedTable> {
        self.ensure(name, &quarantine_fields(), |schema| to_partition_spec(&[], schema)).await
    }

    async fn ensure(
        &self,
        name: &TableName,
        fields: &[Field],
        spec: impl Fn(&Schema) -> Result<UnboundPartitionSpec>,
    ) -> Result<LoadedTable> {
        if let Some(loaded) = self.try_load(name).await? {
            return self.evolve_to(loaded, fields, spec).await;
        }
        let schema = to_iceberg_schema(fields, 0)?;
        let location = format!("{}/{}/{}", self.warehouse, name.namespace, name.name);
        let props = HashMap::from([
            ("write.format.default".to_owned(), "parquet".to_owned()),
            // Each kept metadata file is as large as the current one.
            (PREVIOUS_VERSIONS_MAX.to_owned(), PREVIOUS_VERSIONS.to_owned()),
        ]);
        let metadata = TableMetadataBuilder::new(
            schema.clone(),
            spec(&schema)?,
            SortOrder::unsorted_order(),
            location.clone(),
            FormatVersion::V2,
            props,
        )
        .and_then(|b| b.build())
        .map_err(TableError::iceberg("creating table metadata"))?
        .metadata;
        let path = self.write_metadata(&location, 0, &metadata).await?;
        if self.store.create(name, &path).await? {
            tracing::info!(table = %name, metadata = %path, "created table");
            return Ok(LoadedTable { name: name.clone(), location: path, metadata: Arc::new(metadata) });
        }
        // Another process created it first; ours is an orphan file.
        let loaded = self.load(name).await?;
        self.evolve_to(loaded, fields, spec).await
    }

    /// Brings the table to `fields` and the partitioning `spec` builds: an
    /// additive schema change and a new default partition spec (files already
    /// written keep the spec they were written with) in one swap.
    async fn evolve_to(
        &self,
        loaded: LoadedTable,
        fields: &[Field],
        spec: impl Fn(&Schema) -> Result<UnboundPartitionSpec>,
    ) -> Result<LoadedTable> {
        let meta = &loaded.metadata;
        let schema = evolve(&loaded.name, meta.current_schema(), fields, meta.last_column_id())?;
        let wanted_spec = spec(schema.as_ref().unwrap_or(meta.current_schema()))?;
        let spec_changed = !same_partitioning(meta.default_partition_spec(), &wanted_spec);
        // Tables created before the metadata log was bounded get the bound.
        let log_unbounded = !meta.properties().contains_key(PREVIOUS_VERSIONS_MAX);
        if schema.is_none() && !spec_changed && !log_unbounded {
            return Ok(loaded);
        }
        let mut builder = TableMetadataBuilder::new_from_metadata((**meta).clone(), Some(loaded.location.clone()));
        if log_unbounded {
            builder = builder
                .set_properties(HashMap::from([(PREVIOUS_VERSIONS_MAX.to_owned(), PREVIOUS_VERSIONS.to_owned())]))
                .map_err(TableError::iceberg("bounding the metadata log"))?;
        }
        if let Some(schema) = schema {
            builder = builder.add_current_schema(schema).map_err(TableError::iceberg("evolving schema"))?;
        }
        if spec_changed {
            builder = builder
                .add_default_partition_spec(wanted_spec)
                .map_err(TableError::iceberg("evolving partitioning"))?;
        }
        let new = builder.build().map_err(TableError::iceberg("evolving table"))?.metadata;
        let path = self.write_metadata(meta.location(), next_version(&loaded.location), &new).await?;
        if !self.store.swap(&loaded.name, &loaded.location, &path).await? {
            return Err(TableError::CommitConflict { table: loaded.name.clone(), expected: loaded.location.clone() });
        }
        tracing::info!(table = %loaded.name, schema_id = new.current_schema_id(), partition_spec_id = new.default_partition_spec_id(), "evolved table");
        Ok(LoadedTable { name: loaded.name, location: path, metadata: Arc::new(new) })
    }

    /// Loads the table, or `None` if it does not exist.
    pub async fn try_load(&self, name: &TableName) -> Result<Option<LoadedTable>> {
        match self.store.load(name).await? {
            Some(location) => Ok(Some(self.read_metadata(name, location).await?)),
            None => Ok(None),
        }
    }

    /// The state of `name` in the metadata file at `location` (which the
    /// catalog named current at some point: readers that cache metadata by
    /// location ask the catalog, then read only what they have not seen).
    pub async fn read_metadata(&self, name: &TableName, location: String) -> Result<LoadedTable> {
        let bytes = self
            .file_io
            .new_input(&location)
            .map_err(TableError::iceberg("opening metadata file"))?
            .read()
            .await
            .map_err(TableError::iceberg("reading metadata file"))?;
        let metadata: TableMetadata = serde_json::from_slice(&bytes)
            .map_err(|e| TableError::Corrupt { table: name.clone(), reason: format!("{location}: {e}") })?;
        Ok(LoadedTable { name: name.clone(), location, metadata: Arc::new(metadata) })
    }

    /// Loads the table; `NotFound` if it does not exist.
    pub async fn load(&self, name: &TableName) -> Result<LoadedTable> {
        self.try_load(name).await?.ok_or_else(|| TableError::NotFound(name.clone()))
    }

    /// Drops a table from the catalog; with `purge`, also deletes its data
    /// and metadata files. Without `purge` the files stay, so another
    /// catalog can still register them.
    pub async fn drop_table(&self, name: &TableName, purge: bool) -> Result<()> {
        let loaded = self.load(name).await?;
        if !self.store.drop_table(name, &loaded.location).await? {
            return Err(TableError::CommitConflict { table: name.clone(), expected: loaded.location });
        }
        tracing::info!(table = %name, purge, "dropped table");
        if purge {
            self.file_io
                .delete_prefix(loaded.metadata.location())
                .await
                .map_err(TableError::iceberg("deleting the table's files"))?;
        }
        Ok(())
    }

    /// The table, if snapshot `snapshot_id` is in it: how a writer whose
    /// commit had an unknown outcome ([`TableError::CommitUnknown`]) learns
    /// whether it landed. `None` means it did not.
    pub async fn landed(&self, name: &TableName, snapshot_id: i64) -> Result<Option<LoadedTable>> {
        let table = self.load(name).await?;
        Ok(table.metadata.snapshot_by_id(snapshot_id).is_some().then_some(table))
    }

    /// Every table in the catalog.
    pub async fn list(&self) -> Result<Vec<TableName>> {
        self.store.list().await
    }

    /// An iceberg-rust `Table` over a loaded state, for scans. Its I/O runs
    /// on the calling Tokio runtime (the query runtime, for SQL).
    ///
    /// The current snapshot reads under the table's current schema, as the
    /// Iceberg spec says: a column added since the last commit reads as
    /// NULL at once. iceberg-rust scans with the schema the snapshot was
    /// written with, which does not know the column yet and fails the query.
    pub fn iceberg_table(&self, loaded: &LoadedTable) -> Result<Table> {
        let runtime = iceberg::Runtime::try_current().map_err(TableError::iceberg("finding the runtime"))?;
        let ident = TableIdent::from_strs([loaded.name.namespace.as_str(), loaded.name.name.as_str()])
            .map_err(TableError::iceberg("naming table"))?;
        Table::builder()
            .identifier(ident)
            .file_io(self.file_io.clone())
            .metadata(current_snapshot_under_current_schema(&loaded.metadata)?)
            .metadata_location(loaded.location.clone())
            .readonly(true)
            .runtime(runtime)
            .build()
            .map_err(TableError::iceberg("opening table"))
    }

    /// Writes a new metadata file, durably (it is about to be published);
    /// the name is unique, so it never overwrites.
    pub(crate) async fn write_metadata(
        &self,
        table_location: &str,
        version: u32,
        metadata: &TableMetadata,
    ) -> Result<String> {
        let path = format!("{table_location}/metadata/{version:05}-{}.metadata.json", Uuid::new_v4());
        let json =
            serde_json::to_vec(metadata).map_err(|e| TableError::Config(format!("cannot serialise metadata: {e}")))?;
        self.file_io
            .new_output(&path)
            .map_err(TableError::iceberg("creating metadata file"))?
            .write(Bytes::from(json))
            .await
            .map_err(TableError::iceberg("writing metadata file"))?;
        crate::durable::sync(vec![path.clone()]).await?;
        Ok(path)
    }
}

/// Whether `current` partitions rows as `wanted` would: the same transforms
/// of the same source columns, in order.
fn same_partitioning(current: &PartitionSpec, wanted: &UnboundPartitionSpec) -> bool {
    let current: Vec<_> = current.fields().iter().map(|f| (f.source_id, f.transform)).collect();
    let wanted: Vec<_> = wanted.fields().iter().map(|f| (f.source_id, f.transform)).collect();
    current == wanted
}

/// `metadata` with its current snapshot pointing at the current schema; an
/// in-memory view for reads, never written back.
fn current_snapshot_under_current_schema(metadata: &TableMetadataRef) -> Result<TableMetadataRef> {
    let current = metadata.current_schema_id();
    let Some(snapshot) = metadata.current_snapshot().filter(|s| s.schema_id() != Some(current)) else {
        return Ok(metadata.clone());
    };
    // Snapshots are immutable in iceberg-rust's model; the spec's JSON form
    // is the one public way to restate one.
    let broken = |e: serde_json::Error| TableError::Config(format!("cannot restate snapshot schema: {e}"));
    let mut json = serde_json::to_value(&**metadata).map_err(broken)?;
    let snapshots = json.get_mut("snapshots").and_then(serde_json::Value::as_array_mut);
    for s in snapshots.into_iter().flatten() {
        if s.get("snapshot-id").and_then(serde_json::Value::as_i64) == Some(snapshot.snapshot_id()) {
            s["schema-id"] = current.into();
        }
    }
    serde_json::from_value::<TableMetadata>(json).map(Arc::new).map_err(broken)
}

/// The version number for the metadata file that follows `location`.
pub(crate) fn next_version(location: &str) -> u32 {
    location
        .rsplit('/')
        .next()
        .and_then(|f| f.split('-').next())
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(1, |v| v + 1)
}

#[cfg(test)]
mod tests {
    use super::next_version;

    #[test]
    fn metadata_versions_increase() {
        assert_eq!(next_version("file:///w/raw/t/metadata/00007-abc.metadata.json"), 8);
        assert_eq!(next_version("garbage"), 1);
    }
}
