//! The one place errors become SQLSTATE codes, as `error.rs` is for HTTP
//! statuses: clients branch on the code (psql's `\set VERBOSITY verbose`
//! shows it; drivers raise a typed exception from its class).

use arrow_schema::ArrowError;
use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};
use tributary_query::QueryError;

use crate::auth::Denied;

/// A statement's error: `ERROR`, the connection stays usable.
pub fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".to_owned(), code.to_owned(), message.into())))
}

/// A connection's error: `FATAL`, the connection is closed.
pub fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".to_owned(), code.to_owned(), message.into())))
}

/// A refused caller: 28P01 (no known token: invalid password) or 42501
/// (insufficient privilege, naming the namespace).
pub fn denied(e: Denied) -> PgWireError {
    match e {
        Denied::Unauthenticated(m) => fatal("28P01", m),
        Denied::Forbidden(m) => error("42501", m),
    }
}

/// A failed statement, by the SQLSTATE a Postgres server would answer.
pub fn query(e: QueryError) -> PgWireError {
    error(sqlstate(&e), e.to_string())
}

/// A failure reading the lake's table list.
pub fn table(e: tributary_table::TableError) -> PgWireError {
    error("XX000", e.to_string())
}

fn sqlstate(e: &QueryError) -> &'static str {
    match e {
        QueryError::ReadOnly { statement, .. } if statement == "several statements" => "42601",
        QueryError::ReadOnly { .. } => "42501",
        QueryError::Parameter(_) => "22P02",
        QueryError::ShuttingDown => "57P01",
        QueryError::Sql(e) => match e.find_root() {
            DataFusionError::SQL(..) => "42601",
            DataFusionError::Plan(m) if m.starts_with("table '") && m.contains("' not found") => "42P01",
            DataFusionError::SchemaError(..) => "42703",
            DataFusionError::ArrowError(e, _) => match e.as_ref() {
                ArrowError::DivideByZero => "22012",
                ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
                _ => "XX000",
            },
            DataFusionError::NotImplemented(_) => "0A000",
            DataFusionError::ResourcesExhausted(_) => "53000",
            _ => "XX000",
        },
        _ => "XX000",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(sql_error: QueryError) -> &'static str {
        sqlstate(&sql_error)
    }

    #[test]
    fn errors_carry_the_postgres_sqlstate() {
        let parse = tributary_query::read_only::check("SELEC 1").unwrap_err();
        assert_eq!(code(parse), "42601");
        let write = tributary_query::read_only::check("DROP TABLE raw.t").unwrap_err();
        assert_eq!(code(write), "42501");
        let missing = QueryError::Sql(DataFusionError::Plan("table 'tributary.raw.nope' not found".into()));
        assert_eq!(code(missing), "42P01");
        assert_eq!(code(QueryError::Parameter("$1".into())), "22P02");
        assert_eq!(code(QueryError::Sql(DataFusionError::Execution("boom".into()))), "XX000");
        let zero = DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None);
        assert_eq!(code(QueryError::Sql(zero)), "22012");
    }
}
