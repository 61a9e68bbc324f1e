//! The warehouse's storage: the local file system, or an S3-compatible
//! bucket ([`s3`]), behind the one `FileIO` every data and metadata file
//! goes through.
//!
//! On S3 a commit is still atomic: objects have unique names and are never
//! overwritten, nothing references them until the catalog swap, and a PUT
//! is durable once answered (so `durable` skips them). Settings come from
//! `[warehouse.s3]`, else from the standard AWS environment variables.
//! Instance-metadata credentials are not looked up: a missing key is an
//! error at start, not a hang.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub mod s3;

use iceberg::io::{FileIO, FileIOBuilder};
use tributary_core::config::{S3Config, Sse, Warehouse};

use self::s3::{S3Settings, S3StorageFactory};

use crate::error::{Result, TableError};

/// How long the first request to an S3 warehouse may take before the lake
/// refuses to open.
const REACH_TIMEOUT: Duration = Duration::from_secs(15);

/// A file found by [`Lister::list`].
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its location (`file://…` or `s3://bucket/key`).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
    /// A version tag: the ETag on S3, the modification time in
    /// nanoseconds on local disk.
    pub tag: String,
}

/// What `FileIO` does not offer: listing (orphan cleanup and landing areas
/// need it) and the `object_store` client DataFusion's scan reads through.
#[derive(Debug, Clone)]
pub enum Lister {
    /// Walks local directories.
    Local,
    /// Lists bucket prefixes.
    S3(s3::S3Storage),
}

impl Lister {
    /// Every file under `location`, recursively; nothing if it does not exist.
    pub async fn list(&self, location: &str) -> Result<Vec<Listed>> {
        match self {
            Self::S3(s3) => s3.list(location).await.map_err(TableError::iceberg("listing")),
            Self::Local => {
                let root = location.strip_prefix("file://").unwrap_or(location).to_owned();
                tokio::task::spawn_blocking(move || walk(Path::new(&root)))
                    .await
                    .map_err(|e| TableError::Config(format!("listing task: {e}")))?
            }
        }
    }

    /// The `object_store` client holding `location`, with the URL it
    /// answers for (`s3://bucket`), for readers that go through
    /// `object_store` rather than `FileIO` (DataFusion's Parquet scan).
    /// `None` on local disk, which DataFusion reads itself.
    pub fn object_store(&self, location: &str) -> Result<Option<(String, Arc<dyn object_store::ObjectStore>)>> {
        match self {
            Self::Local => Ok(None),
            Self::S3(s3) => {
                let (client, _key) = s3.locate(location).map_err(TableError::iceberg("reaching the bucket"))?;
                let (scheme, rest) = location.split_once("://").unwrap_or(("s3", location));
                let bucket = rest.split('/').next().unwrap_or(rest);
                Ok(Some((format!("{scheme}://{bucket}"), client)))
            }
        }
    }
}

/// Every file under `root`, as `file://` locations.
fn walk(root: &Path) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(TableError::Config(format!("cannot list {}: {e}", dir.display()))),
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                let modified = meta.modified().unwrap_or(SystemTime::now());
                let nanos = modified.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                let path = format!("file://{}", entry.path().display());
                out.push(Listed { path, size: meta.len(), modified, tag: nanos.to_string() });
            }
        }
    }
    Ok(out)
}

/// The storage of `warehouse`, the warehouse's location (`file://…` or
/// `s3://bucket/prefix`) and its lister, checked to be usable.
pub async fn open(warehouse: &Warehouse) -> Result<(FileIO, String, Lister)> {
    match warehouse {
        Warehouse::Local(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| TableError::Config(format!("cannot create warehouse directory {}: {e}", dir.display())))?;
            let abs = dir.canonicalize().map_err(|e| {
                TableError::Config(format!("cannot resolve warehouse directory {}: {e}", dir.display()))
            })?;
            Ok((FileIO::new_with_fs(), format!("file://{}", abs.display()), Lister::Local))
        }
        Warehouse::S3 { settings, .. } => {
            let location = warehouse.to_string();
            let settings = s3_settings(settings, env)?;
            let lister = Lister::S3(s3::S3Storage::new(settings.clone()));
            let file_io = FileIOBuilder::new(Arc::new(S3StorageFactory(settings))).build();
            reach(&file_io, &location).await?;
            Ok((file_io, location, lister))
        }
    }
}

/// The properties another engine's FileIO needs to read and write the
/// warehouse (Iceberg's `s3.*` names), as the REST catalog hands them to
/// its clients; none for a local warehouse.
pub fn client_properties(warehouse: &Warehouse) -> Result<std::collections::HashMap<String, String>> {
    let mut props = std::collections::HashMap::new();
    if let Warehouse::S3 { settings, .. } = warehouse {
        let s = s3_settings(settings, env)?;
        props.insert("s3.region".to_owned(), s.region);
        props.insert("s3.access-key-id".to_owned(), s.access_key_id);
        props.insert("s3.secret-access-key".to_owned(), s.secret_access_key);
        props.insert("s3.path-style-access".to_owned(), s.path_style.to_string());
        if let Some(endpoint) = s.endpoint {
            props.insert("s3.endpoint".to_owned(), endpoint);
        }
        if let Some(token) = s.session_token {
            props.insert("s3.session-token".to_owned(), token);
        }
    }
    Ok(props)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The settings of `s3`, each from the config or else the environment (`var`).
fn s3_settings(s3: &S3Config, var: impl Fn(&str) -> Option<String>) -> Result<S3Settings> {
    let or_env = |own: &Option<String>, names: &[&str]| own.clone().or_else(|| names.iter().find_map(|n| var(n)));
    let endpoint = or_env(&s3.endpoint, &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]);
    let region = or_env(&s3.region, &["AWS_REGION", "AWS_DEFAULT_REGION"]).unwrap_or_else(|| "us-east-1".to_owned());
    let key = or_env(&s3.access_key_id, &["AWS_ACCESS_KEY_ID"]);
    let secret = or_env(&s3.secret_access_key, &["AWS_SECRET_ACCESS_KEY"]);
    let (Some(access_key_id), Some(secret_access_key)) = (key, secret) else {
        return Err(TableError::Config(
            "the S3 warehouse has no credentials: set [warehouse.s3] access_key_id and secret_access_key, \
             or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                .to_owned(),
        ));
    };
    Ok(S3Settings {
        path_style: s3.path_style.unwrap_or(endpoint.is_some()),
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        session_token: or_env(&s3.session_token, &["AWS_SESSION_TOKEN"]),
        sse: match s3.sse {
            Sse::None => None,
            Sse::S3 => Some("AES256".to_owned()),
            Sse::Kms => Some("aws:kms".to_owned()),
        },
        sse_kms_key_id: s3.sse_kms_key_id.clone(),
    })
}

/// A client for S3 objects outside the warehouse (a landing area), with
/// `s3`'s settings, else the environment's.
pub fn s3_client(s3: &S3Config) -> Result<s3::S3Storage> {
    Ok(s3::S3Storage::new(s3_settings(s3, env)?))
}

/// One request to the warehouse, so that a wrong endpoint, bucket or key
/// fails the start with the reason instead of the first commit.
async fn reach(file_io: &FileIO, location: &str) -> Result<()> {
    let probe = format!("{location}/.tributary-probe");
    match tokio::time::timeout(REACH_TIMEOUT, file_io.exists(&probe)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(TableError::Config(format!(
            "cannot use the S3 warehouse {location}: {e}; check the bucket, [warehouse.s3] endpoint and the credentials"
        ))),
        Err(_) => Err(TableError::Config(format!(
            "the S3 warehouse {location} did not answer within {}s; check [warehouse.s3] endpoint",
            REACH_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_config_else_the_environment() {
        let vars = |n: &str| match n {
            "AWS_ACCESS_KEY_ID" => Some("env-key".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("env-secret".to_owned()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:8333".to_owned()),
            _ => None,
        };
        let own = S3Config {
            access_key_id: Some("mine".into()),
            sse: Sse::Kms,
            sse_kms_key_id: Some("k1".into()),
            ..S3Config::default()
        };
        let s = s3_settings(&own, vars).unwrap();
        assert_eq!((s.access_key_id.as_str(), s.secret_access_key.as_str()), ("mine", "env-secret"));
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert!(s.path_style, "an endpoint of its own means path style");
        assert_eq!(s.region, "us-east-1");
        assert_eq!((s.sse.as_deref(), s.sse_kms_key_id.as_deref()), (Some("aws:kms"), Some("k1")));
        let err = s3_settings(&S3Config::default(), |_| None).unwrap_err().to_string();
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    }
}
