//! Exposes the lake to DataFusion as catalog `tributary`, one schema per
//! namespace, so that SQL names tables `namespace.table`.
//!
//! Every query asks the catalog for each table's current metadata, so a
//! query always sees the latest committed snapshot; the metadata files and
//! manifests behind it are kept between queries ([`crate::scan`]). Two suffixes reach further:
//! `"table@<snapshot_id>"` or `"table@<RFC 3339 time>"` reads an older
//! snapshot (time travel) and
//! `"table$snapshots"`, `$history`, `$manifests` and `$files` are metadata
//! tables ([`crate::metadata`]).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use tributary_core::TableName;
use tributary_table::{Lake, LoadedTable};

use crate::metadata::MetadataTable;
use crate::scan::{self, ScanCache};

/// The lake as a DataFusion catalog, with table names read once per session.
#[derive(Debug)]
pub struct LakeCatalog {
    schemas: BTreeMap<String, Arc<LakeSchema>>,
}

impl LakeCatalog {
    /// Lists the lake's tables and builds the namespace schemas; their
    /// scans share `cache`.
    pub async fn load(lake: &Lake, cache: Arc<ScanCache>) -> Result<Self> {
        let mut schemas: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in lake.list().await.map_err(|e| DataFusionError::External(Box::new(e)))? {
            schemas.entry(t.namespace).or_default().push(t.name);
        }
        let schemas = schemas
            .into_iter()
            .map(|(ns, tables)| {
                let schema = LakeSchema { lake: lake.clone(), cache: cache.clone(), namespace: ns.clone(), tables };
                (ns, Arc::new(schema))
            })
            .collect();
        Ok(Self { schemas })
    }
}

impl CatalogProvider for LakeCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.schemas.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.schemas.get(name).map(|s| s.clone() as Arc<dyn SchemaProvider>)
    }
}

/// One namespace.
#[derive(Debug)]
pub struct LakeSchema {
    lake: Lake,
    cache: Arc<ScanCache>,
    namespace: String,
    tables: Vec<String>,
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.tables.clone()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let (base, suffix) = match name.find(['@', '$']) {
            Some(i) => (&name[..i], Some(&name[i..])),
            None => (name, None),
        };
        if !self.tables.iter().any(|t| t == base) {
            return Ok(None);
        }
        let ext = |e| DataFusionError::External(Box::new(e));
        let table = TableName::new(&self.namespace, base);
        let Some(loaded) = self.cache.table(&self.lake, &table).await.map_err(ext)? else { return Ok(None) };
        let provider: Arc<dyn TableProvider> = match suffix {
            None => scan::provider(&self.lake, &self.cache, &loaded, None).await?,
            Some(s)
                if s.starts_with('$')
                    && let Some(kind) = MetadataTable::of(&s[1..]) =>
            {
                let table = self.lake.iceberg_table(&loaded).map_err(ext)?;
                Arc::new(kind.read(&loaded, &table).await?)
            }
            Some(s) if s.starts_with('@') => {
                let id = self.snapshot_at(&loaded, name, base, &s[1..])?;
                scan::provider(&self.lake, &self.cache, &loaded, Some(id)).await?
            }
            Some(s) => {
                return Err(DataFusionError::Plan(format!(
                    "'{name}': unknown suffix '{s}'; use \"{base}@<snapshot_id>\", \"{base}@<RFC 3339 time>\", or one of \
                     \"{base}$snapshots\", \"{base}$history\", \"{base}$manifests\", \"{base}$files\""
                )));
            }
        };
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        let base = name.split(['@', '$']).next().unwrap_or(name);
        self.tables.iter().any(|t| t == base)
    }
}

impl LakeSchema {
    /// The snapshot `at` names: a snapshot id, or an RFC 3339 time for the
    /// table as it was then (the newest snapshot of the current history
    /// committed at or before it).
    fn snapshot_at(&self, loaded: &LoadedTable, name: &str, base: &str, at: &str) -> Result<i64> {
        let table = format!("{}.{base}", self.namespace);
        let list = format!("list them with \"{base}$snapshots\"");
        if let Ok(id) = at.parse::<i64>() {
            return match loaded.metadata.snapshot_by_id(id) {
                Some(_) => Ok(id),
                None => Err(DataFusionError::Plan(format!("table '{table}' has no snapshot {id}; {list}"))),
            };
        }
        let Ok(time) = chrono::DateTime::parse_from_rfc3339(at) else {
            return Err(DataFusionError::Plan(format!(
                "'{name}': time travel takes a snapshot id (\"{base}@1234\") or an RFC 3339 time \
                 (\"{base}@2026-11-29T10:00:00Z\"); {list}"
            )));
        };
        let ms = time.timestamp_millis();
        let mut snapshot = loaded.metadata.current_snapshot();
        while let Some(s) = snapshot {
            if s.timestamp_ms() <= ms {
                return Ok(s.snapshot_id());
            }
            snapshot = s.parent_snapshot_id().and_then(|p| loaded.metadata.snapshot_by_id(p));
        }
        Err(DataFusionError::Plan(format!("table '{table}' has no snapshot committed at or before {at}; {list}")))
    }
}

pub(crate) fn iceberg_err(e: tributary_table::iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
