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
pub mod read_only;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::prelude::{SessionConfig, SessionContext};
use tributary_core::metrics as m;
use tributary_table::Lake;

use crate::catalog::LakeCatalog;
pub use crate::error::QueryError;
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
        Ok(Self { lake, runtime: Arc::new(CpuRuntime::new(threads, "tributary-query")?) })
    }

    /// Plans and runs `sql` on the query runtime. Only reads are allowed
    /// ([`read_only`]).
    pub async fn sql(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let statement = match read_only::check(sql) {
            Ok(statement) => statement,
            Err(e) => {
                metrics::counter!(m::QUERIES, "outcome" => "refused").increment(1);
                return Err(e);
            }
        };
        let lake = self.lake.clone();
        let rt = self.runtime.handle().ok_or(QueryError::ShuttingDown)?;
        let result = rt
            .spawn(async move {
                if let Some(parts) = read_only::describe_target(&statement)
                    && let Some(result) = describe::describe(&lake, &parts).await?
                {
                    return Ok(result);
                }
                run(&lake, statement).await
            })
            .await
            .map_err(|_| QueryError::ShuttingDown)?;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(m::QUERIES, "outcome" => outcome).increment(1);
        result
    }
}

async fn run(lake: &Lake, statement: Statement) -> Result<QueryResult, QueryError> {
    let config = SessionConfig::new().with_default_catalog_and_schema(CATALOG, "raw").with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_catalog(CATALOG, Arc::new(LakeCatalog::load(lake).await?));
    let plan = ctx.state().statement_to_plan(statement).await?;
    read_only::options().verify_plan(&plan)?;
    let df = ctx.execute_logical_plan(plan).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(QueryResult { schema, batches })
}
