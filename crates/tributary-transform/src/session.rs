//! The DataFusion session a job run plans in.
//!
//! A run must read exactly the snapshots it records, not whatever is current
//! when DataFusion resolves a name, and a `sql` job's query must see only the
//! input's new rows under the input's own name. So the lake catalog is
//! wrapped: names the run *pins* resolve to the provider it chose (a
//! snapshot, a filtered view, the new rows in memory); every other name
//! resolves through the lake as `tributary sql` would. The run's own working
//! tables (`_input`, `_current`, `_delta`) live in a scratch schema that is
//! the session's default, so they never collide with a lake namespace.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, Expr, SessionConfig, SessionContext};
use tributary_core::TableName;
use tributary_query::CATALOG;
use tributary_query::catalog::LakeCatalog;
use tributary_query::scan::{self, ScanCache};
use tributary_table::{Lake, LoadedTable};

use crate::error::{Result, TransformError};

/// The scratch schema holding a run's working tables.
const SCRATCH: &str = "_job";

/// Memory a run's query may hold before sorts and aggregates spill.
const JOB_MEMORY: usize = 1 << 30;

/// A session with pinned names and scratch tables.
pub(crate) struct JobSession {
    pub ctx: SessionContext,
    scratch: Arc<MemorySchemaProvider>,
    pins: Arc<std::sync::Mutex<HashMap<TableName, Arc<dyn TableProvider>>>>,
    /// The metadata and manifests read so far, for the snapshots it pins.
    cache: Arc<ScanCache>,
    job: String,
}

impl JobSession {
    /// A session over `lake`, whose scans share `cache`; without a lake
    /// (`tributary check`), only pinned names resolve.
    pub async fn new(lake: Option<&Lake>, job: &str, cache: Arc<ScanCache>) -> Result<Self> {
        let config = SessionConfig::new().with_default_catalog_and_schema(CATALOG, SCRATCH);
        // A first run or a backfill sorts and groups a whole table: past
        // this much memory DataFusion spills to temporary files instead of
        // growing without bound beside the server.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(JOB_MEMORY, 1.0)
            .build_arc()
            .map_err(TransformError::query(job))?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let lake_catalog = match lake {
            Some(lake) => Some(LakeCatalog::load(lake, cache.clone()).await.map_err(TransformError::query(job))?),
            None => None,
        };
        let scratch = Arc::new(MemorySchemaProvider::new());
        let pins = Arc::default();
        let overlay = Overlay { lake: lake_catalog, scratch: scratch.clone(), pins: Arc::clone(&pins) };
        ctx.register_catalog(CATALOG, Arc::new(overlay));
        Ok(Self { ctx, scratch, pins, cache, job: job.to_owned() })
    }

    /// Makes `name` resolve to `provider` in this session's SQL.
    pub fn pin(&self, name: &TableName, provider: Arc<dyn TableProvider>) {
        self.pins.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.clone(), provider);
    }

    /// Registers a working table in the scratch schema.
    pub fn register(&self, name: &str, provider: Arc<dyn TableProvider>) -> Result<()> {
        self.scratch.register_table(name.to_owned(), provider).map_err(TransformError::query(&self.job))?;
        Ok(())
    }

    /// Drops a working table.
    pub fn deregister(&self, name: &str) -> Result<()> {
        self.scratch.deregister_table(name).map_err(TransformError::query(&self.job))?;
        Ok(())
    }

    /// `batches` (of `schema`) as a table.
    pub fn memory(&self, schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Arc<dyn TableProvider>> {
        Ok(Arc::new(MemTable::try_new(schema, vec![batches]).map_err(TransformError::query(&self.job))?))
    }

    /// `table` as of its current snapshot (empty before its first commit).
    pub async fn snapshot(&self, lake: &Lake, table: &LoadedTable) -> Result<Arc<dyn TableProvider>> {
        scan::provider(lake, &self.cache, table, None).await.map_err(TransformError::query(&self.job))
    }

    /// `table` as of snapshot `id`.
    pub async fn snapshot_at(&self, lake: &Lake, table: &LoadedTable, id: i64) -> Result<Arc<dyn TableProvider>> {
        scan::provider(lake, &self.cache, table, Some(id)).await.map_err(TransformError::query(&self.job))
    }

    /// `provider` filtered by `filter`, as a view (the filter reaches the
    /// scan, which prunes files by their column bounds).
    pub fn filtered(&self, provider: Arc<dyn TableProvider>, filter: Option<Expr>) -> Result<Arc<dyn TableProvider>> {
        let Some(filter) = filter else { return Ok(provider) };
        let df =
            self.ctx.read_table(provider).and_then(|df| df.filter(filter)).map_err(TransformError::query(&self.job))?;
        Ok(df.into_view())
    }

    /// Plans `sql` (generated by the job's kind).
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        self.ctx.sql(sql).await.map_err(TransformError::query(&self.job))
    }

    /// Plans a user's `sql`, which may only read (the rule `tributary sql`
    /// keeps).
    pub async fn user_sql(&self, sql: &str) -> Result<DataFrame> {
        let statement = tributary_query::read_only::check(sql)
            .map_err(|e| TransformError::definition(&self.job, format!("sql: {e}")))?;
        let query = TransformError::query(&self.job);
        let plan = self.ctx.state().statement_to_plan(statement).await;
        let plan = plan.and_then(|p| tributary_query::read_only::options().verify_plan(&p).map(|()| p));
        let plan = plan.map_err(query)?;
        self.ctx.execute_logical_plan(plan).await.map_err(TransformError::query(&self.job))
    }
}

#[derive(Debug)]
struct Overlay {
    lake: Option<LakeCatalog>,
    scratch: Arc<MemorySchemaProvider>,
    pins: Arc<std::sync::Mutex<HashMap<TableName, Arc<dyn TableProvider>>>>,
}

impl CatalogProvider for Overlay {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        let mut names = self.lake.as_ref().map(|l| l.schema_names()).unwrap_or_default();
        names.push(SCRATCH.to_owned());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SCRATCH {
            return Some(self.scratch.clone());
        }
        let pinned: HashMap<String, Arc<dyn TableProvider>> = self
            .pins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(t, _)| t.namespace == name)
            .map(|(t, p)| (t.name.clone(), p.clone()))
            .collect();
        let lake = self.lake.as_ref().and_then(|l| l.schema(name));
        if lake.is_none() && pinned.is_empty() {
            return None;
        }
        Some(Arc::new(PinnedSchema { lake, pinned }))
    }
}

#[derive(Debug)]
struct PinnedSchema {
    lake: Option<Arc<dyn SchemaProvider>>,
    pinned: HashMap<String, Arc<dyn TableProvider>>,
}

#[async_trait]
impl SchemaProvider for PinnedSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lake.as_ref().map(|l| l.table_names()).unwrap_or_default();
        names.extend(self.pinned.keys().filter(|k| !names.contains(k)).cloned().collect::<Vec<_>>());
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(p) = self.pinned.get(name) {
            return Ok(Some(p.clone()));
        }
        match &self.lake {
            Some(lake) => lake.table(name).await,
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.pinned.contains_key(name) || self.lake.as_ref().is_some_and(|l| l.table_exist(name))
    }
}
