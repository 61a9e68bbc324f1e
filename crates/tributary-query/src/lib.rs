//! SQL over the lake with DataFusion, on a runtime of its own.
//!
//! Queries are CPU-bound and can run for seconds; ingestion commits are
//! latency-bound. Running DataFusion on a dedicated Tokio runtime keeps a
//! heavy query from starving the I/O runtime that serves ingest requests and
//! commits.

pub mod catalog;
pub mod describe;
pub mod error;
mod metadata;
pub mod output;
pub mod params;
pub mod read_only;
pub mod scan;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use datafusion::prelude::{SessionConfig, SessionContext};
use tributary_core::metrics as m;
use tributary_table::Lake;

use crate::catalog::LakeCatalog;
pub use crate::error::QueryError;
use crate::scan::ScanCache;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement;

/// The DataFusion catalog name under which the lake's namespaces appear.
pub const CATALOG: &str = "tributary";

/// A query's full result.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Output schema.
    pub schema: SchemaRef,
    /// Output rows.
    pub batches: Vec<RecordBatch>,
}

/// Runs SQL against the lake.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    lake: Lake,
    runtime: Arc<CpuRuntime>,
    shared: Shared,
}

/// What every query of an engine shares: the table metadata and manifests
/// read so far, and DataFusion's runtime, whose cache keeps the Parquet
/// footers read so far.
#[derive(Debug, Clone)]
struct Shared {
    cache: Arc<ScanCache>,
    env: Arc<RuntimeEnv>,
}

/// A Tokio runtime for CPU work (queries, zone jobs), apart from the one
/// serving requests and commits, so heavy work cannot starve them.
#[derive(Debug)]
pub struct CpuRuntime(Option<tokio::runtime::Runtime>);

impl CpuRuntime {
    /// A runtime of `threads` workers named `name`.
    pub fn new(threads: usize, name: &str) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .build()?;
        Ok(Self(Some(rt)))
    }

    /// Where to spawn onto it.
    pub fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        // Dropping a runtime inside another one panics; let it wind down
        // in the background instead.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl QueryEngine {
    /// An engine with `threads` worker threads of its own.
    pub fn new(lake: Lake, threads: usize) -> std::io::Result<Self> {
        let runtime = Arc::new(CpuRuntime::new(threads, "tributary-query")?);
        let shared = Shared { cache: Arc::default(), env: Arc::new(RuntimeEnv::default()) };
        Ok(Self { lake, runtime, shared })
    }

    /// Plans and runs `sql` on the query runtime. Only reads are allowed
    /// ([`read_only`]).
    pub async fn sql(&self, sql: &str) -> Result<QueryResult, QueryError> {
        self.run(check(sql)?, &[]).await
    }

    /// Runs a checked statement with `values` bound to its `$1`, `$2`, …
    /// placeholders ([`params`]); `None` is SQL NULL.
    pub async fn run(&self, checked: Checked, values: &[Option<String>]) -> Result<QueryResult, QueryError> {
        let values = values.to_vec();
        let result = self
            .on_runtime(checked.statement, move |lake, shared, statement| async move {
                if let Some(parts) = read_only::describe_target(&statement)
                    && let Some(result) = describe::describe(&lake, &parts).await?
                {
                    return Ok(result);
                }
                run(&lake, &shared, statement, &values).await
            })
            .await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(m::QUERIES, "outcome" => outcome).increment(1);
        result
    }

    /// Plans a checked statement without running it: the types of its
    /// placeholders and the columns it returns (the extended protocol's
    /// Describe).
    pub async fn prepare(&self, checked: Checked) -> Result<Prepared, QueryError> {
        self.on_runtime(checked.statement, |lake, shared, statement| async move {
            if let Some(parts) = read_only::describe_target(&statement)
                && let Some(result) = describe::describe(&lake, &parts).await?
            {
                return Ok(Prepared { params: Vec::new(), schema: result.schema });
            }
            let plan = plan(&lake, &shared, statement).await?.0;
            read_only::options().verify_plan(&plan)?;
            let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
            Ok(Prepared { params: params::types(&plan)?, schema })
        })
        .await
    }

    /// Runs `work` on `statement` on the query runtime.
    async fn on_runtime<T, F, Fut>(&self, statement: Statement, work: F) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: FnOnce(Lake, Shared, Statement) -> Fut,
        Fut: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let rt = self.runtime.handle().ok_or(QueryError::ShuttingDown)?;
        let work = work(self.lake.clone(), self.shared.clone(), statement);
        rt.spawn(work).await.map_err(|_| QueryError::ShuttingDown)?
    }
}

/// What a statement takes and returns, from [`QueryEngine::prepare`].
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Each `$n` placeholder's type, `$1` first; `None`: unconstrained
    /// (bound as text).
    pub params: Vec<Option<DataType>>,
    /// The result's columns.
    pub schema: SchemaRef,
}

/// A statement the read-only gate let through, parsed once, with the
/// namespaces it reads, so that access is checked before anything runs.
#[derive(Debug, Clone)]
pub struct Checked {
    statement: Statement,
    /// The namespaces read (a name without one is in `raw`, the session's
    /// default); `information_schema` (table names and columns only) is
    /// not one.
    pub namespaces: Vec<String>,
}

/// Parses `sql` through the read-only gate ([`read_only::check`]) and
/// resolves the namespaces it reads.
pub fn check(sql: &str) -> Result<Checked, QueryError> {
    let statement = gate(sql)?;
    let (tables, _ctes) = datafusion::sql::resolve::resolve_table_references(&statement, true)?;
    let mut namespaces: Vec<String> =
        tables.iter().map(|t| t.schema().unwrap_or("raw").to_owned()).filter(|ns| ns != "information_schema").collect();
    namespaces.sort();
    namespaces.dedup();
    Ok(Checked { statement, namespaces })
}

/// [`read_only::check`], counting a statement it refuses (`refused`) or
/// cannot parse (`error`); what passes is counted when it has run.
fn gate(sql: &str) -> Result<Statement, QueryError> {
    read_only::check(sql).inspect_err(|e| {
        let outcome = if matches!(e, QueryError::ReadOnly { .. }) { "refused" } else { "error" };
        metrics::counter!(m::QUERIES, "outcome" => outcome).increment(1);
    })
}

async fn plan(lake: &Lake, shared: &Shared, statement: Statement) -> Result<(LogicalPlan, SessionContext), QueryError> {
    let config = SessionConfig::new().with_default_catalog_and_schema(CATALOG, "raw").with_information_schema(true);
    let ctx = SessionContext::new_with_config_rt(config, shared.env.clone());
    ctx.register_catalog(CATALOG, Arc::new(LakeCatalog::load(lake, shared.cache.clone()).await?));
    let plan = ctx.state().statement_to_plan(statement).await?;
    Ok((plan, ctx))
}

async fn run(
    lake: &Lake,
    shared: &Shared,
    statement: Statement,
    values: &[Option<String>],
) -> Result<QueryResult, QueryError> {
    let (mut plan, ctx) = plan(lake, shared, statement).await?;
    plan = params::bind(plan, values)?;
    read_only::options().verify_plan(&plan)?;
    let df = ctx.execute_logical_plan(plan).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(QueryResult { schema, batches })
}
