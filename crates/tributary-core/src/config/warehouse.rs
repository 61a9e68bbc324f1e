//! `[warehouse]`: where data and metadata files live — a local directory
//! (the embedded default) or an S3-compatible bucket and prefix.
//!
//! Credentials and the endpoint may come from the config or from the
//! standard AWS environment variables, which the table layer reads when it
//! opens the lake (this crate does no I/O).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[warehouse]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseConfig {
    /// A local directory, or `s3://bucket/prefix`; default `DATA_DIR/warehouse`.
    #[serde(default)]
    pub path: Option<String>,
    /// Settings of an `s3://` warehouse.
    #[serde(default)]
    pub s3: S3Config,
}

/// `[warehouse.s3]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible server; default
    /// `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, else AWS itself.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Default `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most
    /// S3-compatible servers need; default true when an endpoint is set.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Default `AWS_ACCESS_KEY_ID`.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Default `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Default `AWS_SESSION_TOKEN`.
    #[serde(default)]
    pub session_token: Option<String>,
    /// Server-side encryption at rest: `none` (default), `s3` (SSE-S3) or
    /// `kms` (SSE-KMS, with `sse_kms_key_id` or the account's default key).
    #[serde(default)]
    pub sse: Sse,
    /// The KMS key of `sse = "kms"`.
    #[serde(default)]
    pub sse_kms_key_id: Option<String>,
}

/// Server-side encryption of every object written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sse {
    /// None requested (the bucket's default applies).
    #[default]
    None,
    /// SSE-S3: keys managed by the store (`AES256`).
    S3,
    /// SSE-KMS.
    Kms,
}

/// Where the lake's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warehouse {
    /// A local directory.
    Local(PathBuf),
    /// A bucket and a key prefix (no leading or trailing `/`).
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix, possibly empty.
        prefix: String,
        /// Endpoint, credentials and encryption.
        settings: S3Config,
    },
}

impl Warehouse {
    /// The local directory, if the warehouse is one.
    pub fn local_dir(&self) -> Option<&Path> {
        match self {
            Self::Local(p) => Some(p),
            Self::S3 { .. } => None,
        }
    }
}

impl std::fmt::Display for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::S3 { bucket, prefix, .. } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl WarehouseConfig {
    pub(crate) fn resolve(&self, data_dir: &Path) -> Result<Warehouse, String> {
        let Some(path) = &self.path else {
            self.no_s3_settings()?;
            return Ok(Warehouse::Local(data_dir.join("warehouse")));
        };
        if let Some(rest) = path.strip_prefix("s3://").or_else(|| path.strip_prefix("s3a://")) {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("warehouse.path = '{path}' names no bucket; write s3://bucket/prefix"));
            }
            if self.s3.sse != Sse::Kms && self.s3.sse_kms_key_id.is_some() {
                return Err("warehouse.s3.sse_kms_key_id is set but sse is not \"kms\"".to_owned());
            }
            let prefix = prefix.trim_matches('/').to_owned();
            return Ok(Warehouse::S3 { bucket: bucket.to_owned(), prefix, settings: self.s3.clone() });
        }
        if path.contains("://") {
            return Err(format!("warehouse.path = '{path}': use a local directory or s3://bucket/prefix"));
        }
        self.no_s3_settings()?;
        Ok(Warehouse::Local(PathBuf::from(path)))
    }

    fn no_s3_settings(&self) -> Result<(), String> {
        if self.s3 == S3Config::default() {
            Ok(())
        } else {
            Err("[warehouse.s3] is set but warehouse.path is not an s3:// location".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml: &str) -> Result<Warehouse, String> {
        toml::from_str::<WarehouseConfig>(toml).unwrap().resolve(Path::new("/d"))
    }

    #[test]
    fn a_warehouse_is_a_directory_or_a_bucket_and_prefix() {
        assert_eq!(resolve(""), Ok(Warehouse::Local(PathBuf::from("/d/warehouse"))));
        assert_eq!(resolve("path = \"/lake\""), Ok(Warehouse::Local(PathBuf::from("/lake"))));
        let s3 =
            resolve("path = \"s3://b/a/lake/\"\ns3 = { endpoint = \"http://127.0.0.1:8333\", sse = \"s3\" }").unwrap();
        let Warehouse::S3 { bucket, prefix, settings } = &s3 else { panic!("{s3:?}") };
        assert_eq!((bucket.as_str(), prefix.as_str(), settings.sse), ("b", "a/lake", Sse::S3));
        assert_eq!(s3.to_string(), "s3://b/a/lake");
        for (bad, says) in [
            ("path = \"s3://\"", "names no bucket"),
            ("path = \"gs://b\"", "s3://bucket/prefix"),
            ("s3 = { region = \"eu-west-1\" }", "not an s3://"),
            ("path = \"s3://b\"\ns3 = { sse_kms_key_id = \"k\" }", "not \"kms\""),
        ] {
            assert!(resolve(bad).unwrap_err().contains(says), "{bad}");
        }
    }
}
