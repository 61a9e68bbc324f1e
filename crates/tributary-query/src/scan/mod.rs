//! A lake table as DataFusion's own Parquet scan, planned from the
//! manifests.
//!
//! iceberg-datafusion's provider reads every file through iceberg-rust's
//! Arrow reader and tells DataFusion nothing about them, so `count(*)`
//! reads every row and each query re-reads every manifest. This provider
//! instead:
//! - lists the snapshot's data files from metadata, manifest lists and
//!   manifests kept between queries ([`ScanCache`]);
//! - prunes files whose column bounds rule a filter out (the partition
//!   column's bounds are a day's, an hour's, … so this is partition pruning
//!   too), and tells DataFusion a filter is *exact* when the bounds decide
//!   it for every file, so that no row is filtered again;
//! - hands DataFusion each file's row count, null counts and bounds, from
//!   which it answers `count(*)`, `min` and `max` without reading data;
//! - scans with DataFusion's Parquet reader (row-group and page pruning,
//!   footers cached by the engine's runtime, byte ranges split across
//!   cores, strings read as views).
//!
//! A snapshot with delete files (written by another engine through the REST
//! catalog) is read by iceberg-datafusion's provider, which applies them.

mod cache;
mod stats;

use std::any::Any;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::{ParquetFormat, transform_schema_to_view};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectMeta, ObjectStore};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_optimizer::pruning::PruningPredicate;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use iceberg::spec::{ManifestContentType, SchemaRef as IcebergSchema, SnapshotRef};
use iceberg_datafusion::IcebergStaticTableProvider;
use tributary_table::{Lake, LoadedTable};

pub use self::cache::ScanCache;
use self::stats::{FileStats, Files, all_match};
use crate::catalog::iceberg_err;

/// `loaded` as of snapshot `at` (the current one if `None`), as a
/// DataFusion table.
pub async fn provider(
    lake: &Lake,
    cache: &ScanCache,
    loaded: &LoadedTable,
    at: Option<i64>,
) -> Result<Arc<dyn TableProvider>> {
    let metadata = &loaded.metadata;
    let snapshot = match at {
        Some(id) => Some(
            metadata
                .snapshot_by_id(id)
                .ok_or_else(|| DataFusionError::Plan(format!("table '{}' has no snapshot {id}", loaded.name)))?,
        ),
        None => metadata.current_snapshot(),
    };
    // The current snapshot reads under the current schema, so that a column
    // added since the last commit reads as NULL at once; an older snapshot
    // under the schema it was written with, as the Iceberg spec says.
    let schema = match snapshot {
        Some(s) if metadata.current_snapshot_id() != Some(s.snapshot_id()) => {
            s.schema(metadata).map_err(iceberg_err)?
        }
        _ => metadata.current_schema().clone(),
    };
    // Strings and binaries as views, as DataFusion reads its own Parquet
    // tables: no copy of each value on read, cheaper joins and grouping.
    let arrow = iceberg::arrow::schema_to_arrow_schema(&schema).map_err(iceberg_err)?;
    let arrow: SchemaRef = Arc::new(transform_schema_to_view(&arrow));
    let Some(snapshot) = snapshot else {
        return Ok(Arc::new(LakeTable { schema: arrow, files: Vec::new(), store: None }));
    };
    match files(lake, cache, loaded, snapshot, &schema, &arrow).await? {
        Some((files, store)) => Ok(Arc::new(LakeTable { schema: arrow, files, store })),
        None => {
            let table = lake.iceberg_table(loaded).map_err(|e| DataFusionError::External(Box::new(e)))?;
            let provider = IcebergStaticTableProvider::try_new_from_table_snapshot(table, snapshot.snapshot_id());
            Ok(Arc::new(provider.await.map_err(iceberg_err)?))
        }
    }
}

/// Where a table's files are read from: the URL DataFusion knows the store
/// by and, off local disk, the client to register under it.
type Store = Option<(ObjectStoreUrl, Arc<dyn ObjectStore>)>;

/// The live data files of `snapshot` with their statistics, and their
/// store; `None` if the snapshot has delete files or spans stores.
async fn files(
    lake: &Lake,
    cache: &ScanCache,
    loaded: &LoadedTable,
    snapshot: &SnapshotRef,
    schema: &IcebergSchema,
    arrow: &SchemaRef,
) -> Result<Option<(Vec<FileStats>, Store)>> {
    let io = lake.file_io();
    let list = cache.list(io, snapshot.manifest_list(), loaded.metadata.format_version()).await?;
    let ids: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
    let mut files = Vec::new();
    for m in list.entries() {
        let live = cache.live(io, m).await?;
        if m.content == ManifestContentType::Deletes {
            if live.is_empty() {
                continue;
            }
            return Ok(None);
        }
        files.extend(live.iter().map(|f| FileStats::of(f, arrow, &ids)));
    }
    let ext = |e| DataFusionError::External(Box::new(e));
    let store = match lake.lister().object_store(loaded.metadata.location()).map_err(ext)? {
        None => None,
        Some((url, client)) => {
            if files.iter().any(|f| !f.path.starts_with(&format!("{url}/"))) {
                return Ok(None);
            }
            Some((ObjectStoreUrl::parse(&url)?, client))
        }
    };
    Ok(Some((files, store)))
}

/// One snapshot of a lake table: its schema and its data files.
#[derive(Debug)]
struct LakeTable {
    schema: SchemaRef,
    files: Vec<FileStats>,
    store: Store,
}

impl LakeTable {
    /// For each file, whether it may hold a row that passes `filters`.
    /// Pruning only saves work: a filter it cannot evaluate (DataFusion
    /// rewrites some into comparisons its own types then refuse, such as a
    /// string view against a string) keeps every file, as DataFusion's
    /// row-group pruning does.
    fn keep(&self, filters: &[Expr]) -> Vec<bool> {
        // Filters name columns `ns.table.column`; the table's schema, `column`.
        let Some(predicate) = conjunction(filters.iter().cloned().map(unnormalize_col)) else {
            return vec![true; self.files.len()];
        };
        let pruned = DFSchema::try_from(self.schema.as_ref().clone())
            .and_then(|df_schema| create_physical_expr(&predicate, &df_schema, &ExecutionProps::new()))
            .and_then(|physical| PruningPredicate::try_new(physical, self.schema.clone()))
            .and_then(|pruning| pruning.prune(&Files { schema: &self.schema, files: &self.files }));
        pruned.unwrap_or_else(|e| {
            tracing::debug!(error = %e, filter = %predicate, "files not pruned");
            vec![true; self.files.len()]
        })
    }

    /// Whether the bounds settle `filter` for every file: each either
    /// holds no row that passes or only rows that do.
    fn decides(&self, filter: &Expr) -> bool {
        let keep = self.keep(std::slice::from_ref(filter));
        self.files.iter().zip(keep).all(|(f, keep)| !keep || all_match(filter, &self.schema, f))
    }

    /// A file's location as its key in the store.
    fn key(&self, path: &str) -> Result<Path> {
        let key = match &self.store {
            Some((url, _)) => path.strip_prefix(url.as_str().trim_end_matches('/')).unwrap_or(path),
            None => path.strip_prefix("file://").unwrap_or(path),
        };
        Path::parse(key.trim_start_matches('/')).map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

#[async_trait]
impl TableProvider for LakeTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.decides(f) {
                true => TableProviderFilterPushDown::Exact,
                false => TableProviderFilterPushDown::Inexact,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let keep = self.keep(filters);
        let mut files: Vec<&FileStats> = self.files.iter().zip(keep).filter_map(|(f, k)| k.then_some(f)).collect();
        // With every filter settled by the bounds, a LIMIT needs only the
        // first files that hold that many rows.
        if let Some(limit) = limit
            && filters.iter().all(|f| self.decides(f))
        {
            let mut rows = 0;
            files.retain(|f| {
                let take = rows < limit as u64;
                rows += f.rows;
                take
            });
        }
        if files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let url = match &self.store {
            Some((url, client)) => {
                state.runtime_env().register_object_store(url.as_ref(), client.clone());
                url.clone()
            }
            None => ObjectStoreUrl::local_filesystem(),
        };
        let stats: Vec<Statistics> = files.iter().map(|f| f.statistics()).collect();
        let table_stats = Statistics::try_merge_iter(&stats, &self.schema)?;
        let parts = files
            .iter()
            .zip(stats)
            .map(|(f, s)| {
                let meta = ObjectMeta {
                    location: self.key(&f.path)?,
                    last_modified: chrono::DateTime::UNIX_EPOCH,
                    size: f.size,
                    e_tag: None,
                    version: None,
                };
                Ok(PartitionedFile::new_from_meta(meta).with_statistics(Arc::new(s)))
            })
            .collect::<Result<Vec<_>>>()?;
        let groups = FileGroup::new(parts).split_files(state.config_options().execution.target_partitions);
        let conf = FileScanConfigBuilder::new(url, Arc::new(ParquetSource::new(self.schema.clone())))
            .with_file_groups(groups)
            .with_statistics(table_stats)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        ParquetFormat::default()
            .with_options(state.table_options().parquet.clone())
            .create_physical_plan(state, conf)
            .await
    }
}
