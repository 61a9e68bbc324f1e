//! `tributary check` for jobs: every job's query planned against the
//! schemas of the tables it reads, in dependency order, without a lake.
//!
//! Config validation already refused unknown tables and cycles. Here each
//! job is planned over empty tables of the right schemas, declared tables'
//! from the config and job outputs' from planning the job that writes
//! them, so a misspelt column, an aggregate that does not parse or a query
//! that writes is reported with the job's name before anything runs.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, SchemaRef};
use tributary_core::TableName;
use tributary_core::config::{JobDef, JobKind, ValidConfig};
use tributary_core::schema::Field;
use tributary_table::schema::{lineage_fields, to_iceberg_schema};

use crate::error::{Result, TransformError};
use crate::plan;
use crate::session::JobSession;

/// Plans every job; the first error names the job and what is wrong.
pub async fn check(config: &ValidConfig) -> Result<()> {
    let mut schemas: HashMap<TableName, SchemaRef> = HashMap::new();
    for t in &config.tables {
        let mut fields = t.fields.clone();
        fields.extend(lineage_fields());
        schemas.insert(t.name.clone(), arrow_of(&fields)?);
    }
    for job in &config.jobs {
        let out = plan_job(job, &schemas).await?;
        let fields = crate::output::fields_of(&job.name, &out)?;
        schemas.insert(job.output.clone(), arrow_of(&fields)?);
    }
    Ok(())
}

fn arrow_of(fields: &[Field]) -> Result<SchemaRef> {
    let schema = to_iceberg_schema(fields, 0)?;
    let arrow = iceberg::arrow::schema_to_arrow_schema(&schema)
        .map_err(tributary_table::TableError::iceberg("arrow schema"))?;
    Ok(Arc::new(arrow))
}

/// The output schema of `job`'s query over empty tables of `schemas`.
async fn plan_job(job: &JobDef, schemas: &HashMap<TableName, SchemaRef>) -> Result<arrow_schema::Schema> {
    let session = JobSession::new(None, &job.name, Default::default()).await?;
    for (name, schema) in schemas {
        session.pin(name, session.memory(schema.clone(), Vec::new())?);
    }
    let input =
        schemas.get(&job.input).cloned().ok_or_else(|| TransformError::definition(&job.name, "no input schema"))?;
    let has = |c: &str| input.field_with_name(c).is_ok();
    let missing = |what: &str, c: &str| {
        TransformError::definition(&job.name, format!("{what} '{c}' is not a column of '{}'", job.input))
    };
    let needs_time = !matches!(job.kind, JobKind::Sql { .. })
        && !matches!(&job.kind, JobKind::Enrich { lookup, .. } if *lookup == tributary_core::config::Lookup::Latest && job.time_column.is_none());
    if let Some(t) = job.time_column.as_deref().filter(|_| needs_time) {
        match input.field_with_name(t).map(|f| f.data_type().clone()) {
            Ok(DataType::Timestamp(..)) => {}
            Ok(other) => {
                return Err(TransformError::definition(
                    &job.name,
                    format!("time column '{t}' is {other}, not a timestamp"),
                ));
            }
            Err(_) => return Err(missing("time column", t)),
        }
    }
    session.register("_input", session.memory(input.clone(), Vec::new())?)?;
    let df = match &job.kind {
        JobKind::Cleanse { key, .. } => {
            if let Some(k) = key.iter().find(|k| !has(k)) {
                return Err(missing("key", k));
            }
            session.sql(&plan::cleanse_rejects(job, "_input")).await?;
            let conformed = plan::cleanse_conformed(job, &column_names(&input), "_input");
            let out = session.sql(&conformed).await?;
            let out_columns: Vec<String> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
            session.sql(&plan::cleanse_latest(job, &out_columns, &conformed)).await?
        }
        JobKind::Window { group_by, .. } => {
            if let Some(g) = group_by.iter().find(|g| !has(g)) {
                return Err(missing("group_by", g));
            }
            session.sql(&plan::window_query(job, &[(0, 0)], false)).await?
        }
        JobKind::Sql { sql, .. } => session.user_sql(sql).await?,
        JobKind::Enrich { dimension, on, valid_from, add, .. } => {
            let dim = &schemas[dimension];
            if !has(on) {
                return Err(missing("on", on));
            }
            for c in [on, valid_from].into_iter().chain(add) {
                if dim.field_with_name(c).is_err() {
                    return Err(TransformError::definition(
                        &job.name,
                        format!("'{c}' is not a column of '{dimension}'"),
                    ));
                }
            }
            if let Some(c) = add.iter().find(|c| has(c)) {
                return Err(TransformError::definition(
                    &job.name,
                    format!(
                        "add: '{c}' is a column of '{}' already; a dimension column must have a new name",
                        job.input
                    ),
                ));
            }
            let input_name = format!("{}.{}", plan::q(&job.input.namespace), plan::q(&job.input.name));
            let ingested = dim.field_with_name("_ingested_at").is_ok();
            session.sql(&plan::enrich_query(job, &input_name, ingested)).await?
        }
    };
    // The optimiser sees what the SQL front end does not (types of
    // aggregates, join keys).
    let schema = df.schema().as_arrow().clone();
    df.into_optimized_plan().map_err(TransformError::query(&job.name))?;
    Ok(schema)
}

fn column_names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}
