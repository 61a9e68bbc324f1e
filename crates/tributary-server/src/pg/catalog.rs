//! psql's backslash commands, answered from the lake's table list.
//!
//! The lake has no `pg_catalog`: psql's `\dt`, `\dn`, `\l` and `\d NAME`
//! send queries over `pg_class`, `pg_namespace` and `pg_attribute` with
//! regular-expression operators DataFusion cannot plan. Those queries are
//! recognised by their shape (psql 15's, which newer psql keeps) and
//! answered with the rows psql reads, by column position: namespaces as
//! schemas, tables as tables owned by `tributary`, columns in Postgres
//! types (the types results are sent in). Only what the caller may read is
//! listed. Any other catalog query gets an empty result rather than an
//! error, so a tool's probing does not stop it; the lake itself is queried
//! with plain SQL or `information_schema`.

use std::sync::LazyLock;

use regex::Regex;
use tributary_core::TableName;
use tributary_core::config::Access;
use tributary_query::QueryResult;
use tributary_table::Lake;

use super::encode::type_name;
use super::error;
use super::route::text_result;
use crate::auth::Caller;

/// A catalog query psql sends.
#[derive(Debug, Clone)]
pub enum Query {
    /// `\dt`, `\d`: relations as (Schema, Name, Type, Owner); whether the
    /// kinds asked for include tables.
    Relations { tables: bool, filter: Filter },
    /// `\dn`: namespaces as (Name, Owner).
    Namespaces { filter: Filter },
    /// `\l`: the one database.
    Databases,
    /// `\d NAME`, first: the matching tables' (oid, nspname, relname).
    Lookup { filter: Filter },
    /// `\d NAME`, second: the table's flags, by oid.
    Table { oid: u32 },
    /// `\d NAME`, third: its columns; `\d+` asks for four more.
    Columns { oid: u32, verbose: bool },
    /// Any other catalog query: answered with no rows.
    Other,
}

/// psql's name patterns (`\dt raw.*` becomes `'^(raw)$'` and `'^(.*)$'`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    namespace: Option<Regex>,
    name: Option<Regex>,
}

impl Filter {
    fn of(text: &str) -> Self {
        static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"\b(nspname|relname|datname)\s+OPERATOR\(pg_catalog\.~\)\s+'((?:[^']|'')*)'").expect("valid")
        });
        static NOTHING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[^\s\S]").expect("valid"));
        let mut filter = Self::default();
        for m in PATTERN.captures_iter(text) {
            // A pattern Rust's engine cannot compile matches nothing.
            let re = Regex::new(&m[2].replace("''", "'")).unwrap_or_else(|_| NOTHING.clone());
            match &m[1] {
                "nspname" => filter.namespace = Some(re),
                "relname" => filter.name = Some(re),
                _ => {}
            }
        }
        filter
    }

    fn keeps(&self, namespace: &str, name: Option<&str>) -> bool {
        self.namespace.as_ref().is_none_or(|re| re.is_match(namespace))
            && self.name.as_ref().is_none_or(|re| name.is_some_and(|n| re.is_match(n)))
    }
}

/// The catalog query `text` is, or `None` if it reads no catalog.
pub fn recognise(text: &str) -> Option<Query> {
    static CATALOG: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)\bpg_catalog\s*\.|\bpg_(class|namespace|attribute|attrdef|type|proc|database|settings|roles|user|tables|views|indexes|index|description|am|constraint|tablespace|extension|collation|inherits|policy|publication|stat_\w+)\b",
        )
        .expect("valid")
    });
    static OID: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(?:c\.oid|a\.attrelid)\s*=\s*'(\d+)'").expect("valid"));
    if !CATALOG.is_match(&blank_literals(text)) {
        return None;
    }
    let flat = text.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ");
    let oid = || OID.captures(text).and_then(|c| c[1].parse().ok());
    let query = if flat.contains("from pg_catalog.pg_class c") && flat.contains("as \"schema\"") {
        Query::Relations { tables: flat.contains("c.relkind in (") && flat.contains("'r'"), filter: Filter::of(text) }
    } else if flat.contains("from pg_catalog.pg_namespace n") && flat.contains("as \"name\"") {
        Query::Namespaces { filter: Filter::of(text) }
    } else if flat.contains("from pg_catalog.pg_database d") {
        Query::Databases
    } else if flat.starts_with("select c.oid, n.nspname, c.relname from pg_catalog.pg_class c") {
        Query::Lookup { filter: Filter::of(text) }
    } else if flat.starts_with("select c.relchecks, c.relkind")
        && let Some(oid) = oid()
    {
        Query::Table { oid }
    } else if flat.starts_with("select a.attname,")
        && flat.contains("from pg_catalog.pg_attribute a")
        && let Some(oid) = oid()
    {
        Query::Columns { oid, verbose: flat.contains("a.attstorage") }
    } else {
        tracing::debug!(sql = text, "a catalog query this server does not know: answered with no rows");
        Query::Other
    };
    Some(query)
}

/// `text` with the insides of its string literals blanked, so a value that
/// names a catalog does not make a query one.
fn blank_literals(text: &str) -> String {
    let mut inside = false;
    text.chars()
        .map(|c| {
            if c == '\'' {
                inside = !inside;
                c
            } else if inside {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// The stable oid psql refers to `table` by between its queries.
pub fn oid(table: &TableName) -> u32 {
    16_384 + crc32fast::hash(table.to_string().as_bytes()) % (i32::MAX as u32 - 16_384)
}

/// Answers `query` for `caller`.
pub async fn answer(query: &Query, lake: &Lake, caller: &Caller) -> pgwire::error::PgWireResult<QueryResult> {
    let mut tables: Vec<TableName> = match query {
        Query::Databases | Query::Other => Vec::new(),
        _ => lake.list().await.map_err(error::table)?,
    };
    tables.retain(|t| caller.can(&t.namespace, Access::Read));
    tables.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let by_oid = |oid: u32| tables.iter().find(|t| self::oid(t) == oid);
    let s = |v: &str| Some(v.to_owned());
    Ok(match query {
        Query::Relations { tables: wanted, filter } => {
            let rows: Vec<_> = tables
                .iter()
                .filter(|t| *wanted && filter.keeps(&t.namespace, Some(&t.name)))
                .map(|t| vec![s(&t.namespace), s(&t.name), s("table"), s("tributary")])
                .collect();
            text_result(&["Schema", "Name", "Type", "Owner"], &rows)
        }
        Query::Namespaces { filter } => {
            let mut names: Vec<&str> = tables.iter().map(|t| t.namespace.as_str()).collect();
            names.dedup();
            let rows: Vec<_> =
                names.into_iter().filter(|n| filter.keeps(n, None)).map(|n| vec![s(n), s("tributary")]).collect();
            text_result(&["Name", "Owner"], &rows)
        }
        Query::Databases => {
            text_result(&["Name", "Owner", "Encoding"], &[vec![s("tributary"), s("tributary"), s("UTF8")]])
        }
        Query::Lookup { filter } => {
            let rows: Vec<_> = tables
                .iter()
                .filter(|t| filter.keeps(&t.namespace, Some(&t.name)))
                .map(|t| vec![Some(oid(t).to_string()), s(&t.namespace), s(&t.name)])
                .collect();
            text_result(&["oid", "nspname", "relname"], &rows)
        }
        Query::Table { oid } => {
            // psql reads these by position: no checks, a plain permanent
            // table without indexes, rules or triggers, in access method
            // "iceberg".
            let row = ["0", "r", "f", "f", "f", "f", "f", "f", "f", "", "0", "", "p", "d", "iceberg"].map(s).to_vec();
            let rows: Vec<_> = by_oid(*oid).map(|_| row).into_iter().collect();
            text_result(
                &[
                    "relchecks",
                    "relkind",
                    "relhasindex",
                    "relhasrules",
                    "relhastriggers",
                    "relrowsecurity",
                    "relforcerowsecurity",
                    "relhasoids",
                    "relispartition",
                    "reloptions",
                    "reltablespace",
                    "reloftype",
                    "relpersistence",
                    "relreplident",
                    "amname",
                ],
                &rows,
            )
        }
        Query::Columns { oid, verbose } => {
            let mut names =
                vec!["attname", "format_type", "default", "attnotnull", "attcollation", "attidentity", "attgenerated"];
            if *verbose {
                names.extend(["attstorage", "attcompression", "attstattarget", "col_description"]);
            }
            let mut rows = Vec::new();
            if let Some(table) = by_oid(*oid)
                && let Some(loaded) = lake.try_load(table).await.map_err(error::table)?
            {
                for f in loaded.arrow_schema().map_err(error::table)?.fields() {
                    let not_null = if f.is_nullable() { "f" } else { "t" };
                    let mut row =
                        vec![s(f.name()), Some(type_name(f.data_type())), None, s(not_null), None, s(""), s("")];
                    if *verbose {
                        row.extend([s("x"), s(""), None, None]);
                    }
                    rows.push(row);
                }
            }
            text_result(&names, &rows)
        }
        Query::Other => text_result(&[], &[]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DT: &str = "SELECT n.nspname as \"Schema\",\n  c.relname as \"Name\",\n  CASE c.relkind WHEN 'r' THEN 'table' END as \"Type\",\n  pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\"\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relkind IN ('r','p','')\n      AND n.nspname !~ '^pg_toast'\n  AND n.nspname OPERATOR(pg_catalog.~) '^(raw)$' COLLATE pg_catalog.default\nORDER BY 1,2;";

    #[test]
    fn psql_queries_are_recognised() {
        let Some(Query::Relations { tables: true, filter }) = recognise(DT) else { panic!("\\dt not recognised") };
        assert!(filter.keeps("raw", Some("transactions")) && !filter.keeps("curated", Some("transactions")));
        let lookup = "SELECT c.oid,\n  n.nspname,\n  c.relname\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relname OPERATOR(pg_catalog.~) '^(transactions)$' COLLATE pg_catalog.default\nORDER BY 2, 3;";
        let Some(Query::Lookup { filter }) = recognise(lookup) else { panic!("\\d lookup not recognised") };
        assert!(filter.keeps("quarantine", Some("transactions")) && !filter.keeps("raw", Some("t")));
        let columns = "SELECT a.attname,\n  pg_catalog.format_type(a.atttypid, a.atttypmod)\nFROM pg_catalog.pg_attribute a\nWHERE a.attrelid = '16385' AND a.attnum > 0";
        assert!(matches!(recognise(columns), Some(Query::Columns { oid: 16385, verbose: false })));
        assert!(matches!(recognise("SELECT * FROM pg_catalog.pg_settings"), Some(Query::Other)));
        assert!(recognise("SELECT * FROM raw.t WHERE note = 'pg_catalog.pg_class'").is_none());
        assert!(recognise("SELECT count(*) FROM raw.transactions").is_none());
    }

    #[test]
    fn oids_are_stable_and_past_the_system_range() {
        let t = TableName::new("raw", "transactions");
        assert_eq!(oid(&t), oid(&TableName::new("raw", "transactions")));
        assert!(oid(&t) >= 16_384 && i32::try_from(oid(&t)).is_ok());
    }
}
