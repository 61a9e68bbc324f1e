//! The read-only gate in front of every SQL listener.
//!
//! DataFusion runs any statement it can plan: `COPY … TO '/path'` writes
//! server files, `CREATE EXTERNAL TABLE` reads them, `SET` changes the
//! session. SQL over HTTP and from `tributary sql` is for reading the lake
//! only, so a statement must pass two checks before it is planned:
//!
//! 1. an allowlist on the parsed statement — queries, `SHOW`, `DESCRIBE`
//!    and `EXPLAIN` of those — which refuses everything else *before*
//!    planning (planning `CREATE EXTERNAL TABLE` already reads the file);
//! 2. DataFusion's own `SQLOptions` with DDL, DML and statements disabled,
//!    which catches what hides inside an allowed statement (`SELECT … INTO`).
//!
//! Writes reach the lake only through ingestion and its fenced commit path.

use datafusion::execution::context::SQLOptions;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{SetExpr, Statement};

use crate::error::QueryError;

/// The options every statement is planned with: nothing but reads.
pub fn options() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// Parses `sql` and refuses it unless it is one read-only statement; the
/// statement is then planned as parsed, not parsed again.
pub fn check(sql: &str) -> Result<DfStatement, QueryError> {
    let mut statements = DFParser::parse_sql(sql)?;
    let Some(statement) = statements.pop_front() else {
        return Err(QueryError::Sql(datafusion::error::DataFusionError::Plan(
            "the request holds no SQL statement; send e.g. SELECT count(*) FROM raw.transactions".to_owned(),
        )));
    };
    if !statements.is_empty() {
        return Err(QueryError::ReadOnly {
            statement: "several statements".to_owned(),
            hint: "send one statement per request",
        });
    }
    if let Some(kind) = refused(&statement) {
        return Err(QueryError::ReadOnly { statement: kind, hint: HINT });
    }
    Ok(statement)
}

/// For `DESCRIBE <name>`, answered from the Iceberg schema: the name's parts
/// as written.
pub fn describe_target(statement: &DfStatement) -> Option<Vec<String>> {
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            Statement::ExplainTable { table_name, .. } => {
                Some(table_name.0.iter().map(|p| p.to_string().trim_matches('"').to_owned()).collect())
            }
            _ => None,
        },
        _ => None,
    }
}

const HINT: &str = "SQL here is read-only: use SELECT, SHOW, DESCRIBE or EXPLAIN; data enters through ingestion";

/// The kind of statement that is refused, or `None` if it only reads.
fn refused(statement: &DfStatement) -> Option<String> {
    match statement {
        DfStatement::Statement(s) => refused_sql(s),
        DfStatement::Explain(e) => refused(&e.statement),
        DfStatement::CreateExternalTable(_) => Some("CREATE EXTERNAL TABLE".to_owned()),
        DfStatement::CopyTo(_) => Some("COPY".to_owned()),
        DfStatement::Reset(_) => Some("RESET".to_owned()),
    }
}

fn refused_sql(statement: &Statement) -> Option<String> {
    match statement {
        Statement::Query(q) if matches!(q.body.as_ref(), SetExpr::Select(s) if s.into.is_some()) => {
            Some("SELECT INTO".to_owned())
        }
        Statement::Query(_)
        | Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. } => None,
        Statement::Explain { statement, .. } => refused_sql(statement),
        other => Some(keyword(&other.to_string())),
    }
}

/// The statement's leading keywords, e.g. `SET` or `CREATE TABLE`.
fn keyword(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second, ..] if ["CREATE", "DROP", "ALTER"].contains(&first.to_ascii_uppercase().as_str()) => {
            format!("{} {}", first.to_ascii_uppercase(), second.to_ascii_uppercase())
        }
        [first, ..] => first.to_ascii_uppercase(),
        [] => "statement".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(sql: &str) -> String {
        match check(sql) {
            Err(QueryError::ReadOnly { statement, .. }) => statement,
            other => panic!("{sql}: expected a read-only refusal, got {other:?}"),
        }
    }

    #[test]
    fn reads_pass() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "SHOW TABLES",
            "SHOW COLUMNS FROM raw.t",
            "DESCRIBE raw.t",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
        ] {
            check(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn describe_names_its_table() {
        let target = |sql| describe_target(&check(sql).unwrap());
        assert_eq!(target("DESCRIBE raw.t"), Some(vec!["raw".into(), "t".into()]));
        assert_eq!(target("DESCRIBE \"t@12\""), Some(vec!["t@12".into()]));
        assert_eq!(target("SELECT 1"), None);
    }

    #[test]
    fn writes_and_settings_are_refused_by_name() {
        assert_eq!(refusal("COPY (SELECT 1) TO '/tmp/x.csv'"), "COPY");
        assert_eq!(refusal("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'"), "CREATE EXTERNAL TABLE");
        assert_eq!(refusal("SET datafusion.execution.batch_size = 1"), "SET");
        assert_eq!(refusal("INSERT INTO raw.t VALUES (1)"), "INSERT");
        assert_eq!(refusal("DROP TABLE raw.t"), "DROP TABLE");
        assert_eq!(refusal("CREATE TABLE x AS SELECT 1"), "CREATE TABLE");
        assert_eq!(refusal("SELECT 1 AS x INTO copied"), "SELECT INTO");
        assert_eq!(refusal("EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'"), "COPY");
        assert_eq!(refusal("SELECT 1; SELECT 2"), "several statements");
    }
}
