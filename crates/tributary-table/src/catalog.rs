//! The catalog store: one row per table holding the current metadata location.
//!
//! The tables are the ones the Iceberg JDBC/SQL catalog uses
//! (`iceberg_tables`, `iceberg_namespace_properties`), so PyIceberg's
//! `SqlCatalog` and Java's `JdbcCatalog` can open the same database. The only
//! write that publishes data is [`CatalogStore::swap`], a compare-and-swap of
//! `metadata_location`: exactly one of several racing writers wins it.
//!
//! New catalogs get the JDBC catalog's "v1" schema (with `iceberg_type`, so
//! views can share the table); a "v0" catalog created by another client
//! without that column is used as it is.
//!
//! SQLite and PostgreSQL share one code path through sqlx's `Any` driver.
//! Queries use `$N` placeholders in ascending order of first use, which both
//! drivers bind positionally.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};
use tributary_core::TableName;

use crate::error::{Result, TableError};

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS iceberg_tables (
        catalog_name VARCHAR(255) NOT NULL,
        table_namespace VARCHAR(255) NOT NULL,
        table_name VARCHAR(255) NOT NULL,
        metadata_location VARCHAR(1000),
        previous_metadata_location VARCHAR(1000),
        iceberg_type VARCHAR(5),
        PRIMARY KEY (catalog_name, table_namespace, table_name))",
    "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
        catalog_name VARCHAR(255) NOT NULL,
        namespace VARCHAR(255) NOT NULL,
        property_key VARCHAR(255) NOT NULL,
        property_value VARCHAR(1000),
        PRIMARY KEY (catalog_name, namespace, property_key))",
];

/// Table pointers in a SQLite file or a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct CatalogStore {
    pool: AnyPool,
    catalog: String,
    /// Whether `iceberg_tables` has the v1 `iceberg_type` column.
    typed: bool,
}

/// Matches tables (not views) in a v1 catalog; rows from v0 clients are NULL.
const TABLES_ONLY: &str = " AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)";

impl CatalogStore {
    /// Connects and creates the catalog tables if they are missing.
    pub async fn connect(url: &str, catalog: &str) -> Result<Self> {
        install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let url = if is_sqlite { prepare_sqlite_url(url)? } else { url.to_owned() };
        if !is_sqlite {
            probe(&url).await?;
        }
        let pool = AnyPoolOptions::new()
            // SQLite serialises writers anyway; one connection avoids
            // "database is locked" between our own tasks.
            .max_connections(if is_sqlite { 1 } else { 8 })
            .acquire_timeout(Duration::from_secs(30))
            .connect(&url)
            .await
            .map_err(|e| TableError::Config(format!("cannot open catalog database '{}': {e}", redact(&url))))?;
        for ddl in SCHEMA {
            sqlx::query(ddl).execute(&pool).await.map_err(TableError::catalog("creating catalog tables"))?;
        }
        let typed = sqlx::query("SELECT iceberg_type FROM iceberg_tables LIMIT 0").execute(&pool).await.is_ok();
        Ok(Self { pool, catalog: catalog.to_owned(), typed })
    }

    fn tables_only(&self) -> &'static str {
        if self.typed { TABLES_ONLY } else { "" }
    }

    /// Records a namespace the way the SQL catalog does (an `exists` property).
    pub async fn create_namespace(&self, namespace: &str) -> Result<()> {
        let exists = sqlx::query(
            "SELECT 1 FROM iceberg_namespace_properties WHERE catalog_name = $1 AND namespace = $2 AND property_key = 'exists'",
        )
        .bind(&self.catalog)
        .bind(namespace)
        .fetch_optional(&self.pool)
        .await
        .map_err(TableError::catalog("reading namespace"))?;
        if exists.is_none() {
            let r = sqlx::query(
                "INSERT INTO iceberg_namespace_properties (catalog_name, namespace, property_key, property_value) VALUES ($1, $2, 'exists', 'true')",
            )
            .bind(&self.catalog)
            .bind(namespace)
            .execute(&self.pool)
            .await;
            // A concurrent creator may have won; the namespace exists either way.
            if let Err(e) = r
                && !is_unique_violation(&e)
            {
                return Err(TableError::catalog("creating namespace")(e));
            }
        }
        Ok(())
    }

    /// Whether the catalog database answers, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        let query = sqlx::query("SELECT 1").execute(&self.pool);
        match tokio::time::timeout(timeout, query).await {
            Ok(result) => result.map(drop).map_err(TableError::catalog("checking the catalog")),
            Err(_) => Err(TableError::Config(format!("the catalog database did not answer within {timeout:?}"))),
        }
    }

    /// The current metadata location of a table, if it exists.
    pub async fn load(&self, table: &TableName) -> Result<Option<String>> {
        let sql = format!(
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3{}",
            self.tables_only()
        );
        let row = sqlx::query(&sql)
            .bind(&self.catalog)
            .bind(&table.namespace)
            .bind(&table.name)
            .fetch_optional(&self.pool)
            .await
            .map_err(TableError::catalog("loading table"))?;
        row.map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()
            .map_err(TableError::catalog("loading table"))
            .map(Option::flatten)
    }

    /// Registers a new table. Returns false if it already exists.
    pub async fn create(&self, table: &TableName, metadata_location: &str) -> Result<bool> {
        self.create_namespace(&table.namespace).await?;
        let sql = if self.typed {
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, previous_metadata_location, iceberg_type) VALUES ($1, $2, $3, $4, NULL, 'TABLE')"
        } else {
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, previous_metadata_location) VALUES ($1, $2, $3, $4, NULL)"
        };
        let r = sqlx::query(sql)
            .bind(&self.catalog)
            .bind(&table.namespace)
            .bind(&table.name)
            .bind(metadata_location)
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(TableError::catalog("creating table")(e)),
        }
    }

    /// Publishes `new` as the table's metadata if, and only if, the current
    /// location is still `expected`. Returns whether this call won.
    pub async fn swap(&self, table: &TableName, expected: &str, new: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2 WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5 AND metadata_location = $6",
        )
        .bind(new)
        .bind(expected)
        .bind(&self.catalog)
        .bind(&table.namespace)
        .bind(&table.name)
        .bind(expected)
        .execute(&self.pool)
        .await
        .map_err(TableError::catalog("swapping metadata location"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Removes the table's entry if it still points at `expected`, so a
    /// drop never loses a commit that raced it. Returns whether it did.
    pub async fn drop_table(&self, table: &TableName, expected: &str) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM iceberg_tables WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3 AND metadata_location = $4",
        )
        .bind(&self.catalog)
        .bind(&table.namespace)
        .bind(&table.name)
        .bind(expected)
        .execute(&self.pool)
        .await
        .map_err(TableError::catalog("dropping table"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Every namespace of this catalog: created, or holding a table.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT namespace FROM iceberg_namespace_properties WHERE catalog_name = $1 \
             UNION SELECT table_namespace FROM iceberg_tables WHERE catalog_name = $1{} ORDER BY 1",
            self.tables_only()
        );
        let rows = sqlx::query(&sql)
            .bind(&self.catalog)
            .fetch_all(&self.pool)
            .await
            .map_err(TableError::catalog("listing namespaces"))?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(TableError::catalog("reading namespaces"))
    }

    /// Every table of this catalog, by namespace then name.
    pub async fn list(&self) -> Result<Vec<TableName>> {
        let sql = format!(
            "SELECT table_namespace, table_name FROM iceberg_tables WHERE catalog_name = $1{} ORDER BY table_namespace, table_name",
            self.tables_only()
        );
        let rows = sqlx::query(&sql)
            .bind(&self.catalog)
            .fetch_all(&self.pool)
            .await
            .map_err(TableError::catalog("listing tables"))?;
        rows.iter()
            .map(|r| Ok(TableName::new(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(TableError::catalog("listing tables"))
    }
}

/// One connection attempt, so that an unreachable server is named at once:
/// the pool would retry until its acquire timeout and then say only
/// "pool timed out".
async fn probe(url: &str) -> Result<()> {
    use sqlx::Connection;
    let unreachable = |why: String| {
        TableError::Config(format!(
            "[catalog] url = '{}': cannot connect: {why}; check that the database is running and the url's host, \
             port and credentials",
            redact(url)
        ))
    };
    match tokio::time::timeout(PROBE_TIMEOUT, sqlx::AnyConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!("no answer within {PROBE_TIMEOUT:?}"))),
    }
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() || db.message().contains("UNIQUE") || db.message().contains("duplicate key")
        }
        _ => false,
    }
}

/// Creates the parent directory and asks SQLite to create the file.
fn prepare_sqlite_url(url: &str) -> Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            TableError::Config(format!("cannot create directory {} for the catalog: {e}", parent.display()))
        })?;
    }
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !params.iter().any(|p| p.starts_with("mode=")) {
        params.push("mode=rwc");
    }
    Ok(format!("sqlite://{path}?{}", params.join("&")))
}

fn redact(url: &str) -> String {
    match url::Url::from_str(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_url_gets_create_mode() {
        let dir = std::env::temp_dir().join("tributary-url-test");
        let url = format!("sqlite://{}/c.db", dir.display());
        assert!(prepare_sqlite_url(&url).unwrap().ends_with("/c.db?mode=rwc"));
        assert!(prepare_sqlite_url(&format!("{url}?mode=ro")).unwrap().ends_with("?mode=ro"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
