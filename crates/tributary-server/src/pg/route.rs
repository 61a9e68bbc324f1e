//! What each statement is, before any of it reaches DataFusion.
//!
//! Clients send things at connect and around their queries that are not
//! reads of the lake: `SET` of session settings (JDBC, BI tools),
//! `BEGIN`/`COMMIT`, `SHOW server_version`, `SELECT version()`, and psql's
//! `\d` queries over `pg_catalog`. An error there would break the client
//! before the user's query is sent, so each gets a sensible answer here;
//! everything else is a query for the lake, behind its read-only gate.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use tributary_query::QueryResult;

use super::catalog;

/// The version `SELECT version()` and `server_version` report: psql and
/// drivers pick their catalog queries by it.
pub const SERVER_VERSION: &str = "15.0";

/// A statement's kind, and how it is answered.
#[derive(Debug, Clone)]
pub enum Route {
    /// Nothing but whitespace, semicolons and comments.
    Empty,
    /// Accepted, changes nothing: the command tag to answer.
    Command(Command),
    /// Answered without the lake (`SHOW server_version`, `SELECT version()`).
    Fixed(QueryResult),
    /// A query over `pg_catalog`: answered from the lake's table list.
    Catalog(catalog::Query),
    /// Everything else: SQL for the lake.
    Lake,
}

/// A statement accepted as a no-op: every statement reads the newest
/// snapshots, so transactions and session settings change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `SET`, `RESET`, `DISCARD`, `DEALLOCATE`: the tag.
    Other(&'static str),
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT`/`END` or `ROLLBACK`/`ABORT`: the tag.
    End(&'static str),
}

/// Routes one statement.
pub fn route(sql: &str) -> Route {
    let text = strip_comments(sql);
    let words: Vec<String> =
        text.split_whitespace().take(3).map(|w| w.trim_end_matches(';').to_ascii_uppercase()).collect();
    let first = words.first().map_or("", String::as_str);
    match first {
        "" => return Route::Empty,
        "SET" => return Route::Command(Command::Other("SET")),
        "RESET" => return Route::Command(Command::Other("RESET")),
        "DISCARD" => return Route::Command(Command::Other("DISCARD ALL")),
        "DEALLOCATE" => return Route::Command(Command::Other("DEALLOCATE")),
        "BEGIN" | "START" => return Route::Command(Command::Begin),
        "COMMIT" | "END" => return Route::Command(Command::End("COMMIT")),
        "ROLLBACK" | "ABORT" => return Route::Command(Command::End("ROLLBACK")),
        "SHOW" => {
            if let Some(result) = show(&text) {
                return Route::Fixed(result);
            }
        }
        "SELECT" => {
            if let Some(result) = fixed_select(&text) {
                return Route::Fixed(result);
            }
        }
        _ => {}
    }
    match catalog::recognise(&text) {
        Some(query) => Route::Catalog(query),
        None => Route::Lake,
    }
}

/// The statements of a simple query, split at semicolons outside quotes
/// and comments; blank ones dropped.
pub fn split(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let (mut out, mut start, mut i) = (Vec::new(), 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"') => i = skip_quoted(bytes, i, q),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| i + p);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(bytes.len(), |p| i + 2 + p + 2);
            }
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    out.push(&sql[start..]);
    out.into_iter().filter(|s| !strip_comments(s).trim().is_empty()).collect()
}

/// The index after the quoted text starting at `i` (a doubled quote is
/// an escaped one).
fn skip_quoted(bytes: &[u8], mut i: usize, quote: u8) -> usize {
    i += 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// `sql` without leading comments and trailing semicolons.
fn strip_comments(sql: &str) -> String {
    let mut rest = sql.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    rest.trim_end().trim_end_matches(';').trim_end().to_owned()
}

/// Session parameters as Postgres names them, with the values this server
/// behaves by.
const PARAMETERS: &[(&str, &str)] = &[
    ("server_version", SERVER_VERSION),
    ("server_version_num", "150000"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("transaction_isolation", "read committed"),
    ("default_transaction_isolation", "read committed"),
    ("transaction_read_only", "on"),
    ("default_transaction_read_only", "on"),
    ("standard_conforming_strings", "on"),
    ("timezone", "UTC"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("integer_datetimes", "on"),
    ("search_path", "raw"),
    ("max_identifier_length", "63"),
    ("is_superuser", "off"),
    ("lc_collate", "C.UTF-8"),
    ("lc_ctype", "C.UTF-8"),
];

/// The value of the session parameter `name` ("" if it is not one).
pub(super) fn parameter(name: &str) -> &'static str {
    PARAMETERS.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v)
}

/// `SHOW <parameter>` of a Postgres parameter; other `SHOW`s (`SHOW
/// TABLES`) are DataFusion's.
fn show(text: &str) -> Option<QueryResult> {
    let mut words = text.split_whitespace().skip(1);
    let name = words.next()?.trim_matches('"').to_ascii_lowercase();
    if words.next().is_some() {
        return None;
    }
    let (_, value) = PARAMETERS.iter().find(|(n, _)| *n == name)?;
    Some(text_result(&[name.as_str()], &[vec![Some((*value).to_owned())]]))
}

/// The functions clients call to learn where they are.
fn fixed_select(text: &str) -> Option<QueryResult> {
    let normalized: String = text.to_ascii_lowercase().split_whitespace().collect::<Vec<_>>().join(" ");
    let (column, value) = match normalized.strip_prefix("select ")? {
        "version()" | "pg_catalog.version()" => (
            "version",
            format!(
                "PostgreSQL {SERVER_VERSION} (Tributary {}, Apache DataFusion, read-only)",
                env!("CARGO_PKG_VERSION")
            ),
        ),
        "current_database()" | "pg_catalog.current_database()" => ("current_database", "tributary".to_owned()),
        "current_schema()" | "pg_catalog.current_schema()" | "current_schema" => ("current_schema", "raw".to_owned()),
        "current_user" | "session_user" | "user" => ("current_user", "tributary".to_owned()),
        _ => return None,
    };
    Some(text_result(&[column], &[vec![Some(value)]]))
}

/// A result of text columns: `rows` of `columns`, `None` as NULL.
pub fn text_result(columns: &[&str], rows: &[Vec<Option<String>>]) -> QueryResult {
    let schema =
        Arc::new(Schema::new(columns.iter().map(|c| Field::new(*c, DataType::Utf8, true)).collect::<Vec<_>>()));
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|c| Arc::new(rows.iter().map(|r| r.get(c).cloned().flatten()).collect::<StringArray>()) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap_or_else(|_| RecordBatch::new_empty(schema.clone()));
    QueryResult { schema, batches: vec![batch] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(route: Route) -> String {
        let Route::Fixed(r) = route else { panic!("not a fixed answer: {route:?}") };
        r.batches[0].column(0).as_any().downcast_ref::<StringArray>().unwrap().value(0).to_owned()
    }

    #[test]
    fn connect_time_statements_are_answered() {
        assert!(value(route("SELECT version();")).starts_with("PostgreSQL 15.0 (Tributary"));
        assert_eq!(value(route("show TRANSACTION_ISOLATION")), "read committed");
        assert_eq!(value(route("SHOW server_version")), "15.0");
        assert!(matches!(route("SET extra_float_digits = 3"), Route::Command(Command::Other("SET"))));
        assert!(matches!(route("  begin;"), Route::Command(Command::Begin)));
        assert!(matches!(route("-- nothing\n;"), Route::Empty));
        assert!(matches!(route("SHOW TABLES"), Route::Lake));
        assert!(matches!(route("SELECT version() AS v"), Route::Lake));
        assert!(matches!(route("SELECT count(*) FROM raw.transactions"), Route::Lake));
    }

    #[test]
    fn simple_queries_split_outside_quotes() {
        assert_eq!(
            split("SET a = 1; SELECT ';' AS \"x;y\" -- c;\n; "),
            vec!["SET a = 1", " SELECT ';' AS \"x;y\" -- c;\n"]
        );
        assert_eq!(split("SELECT 'it''s; fine'"), vec!["SELECT 'it''s; fine'"]);
        assert!(split(" ; ;").is_empty());
    }
}
