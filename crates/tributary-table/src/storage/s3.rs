//! An Iceberg `Storage` on an S3-compatible bucket, through `object_store`
//! (rustls with ring: no C toolchain beyond what `ring` needs).
//!
//! Requests are retried with backoff for up to two minutes (a restarted
//! server, a dropped connection); a refusal (403, 404) is not retried.
//! Large files are uploaded in parts as they are written, small ones (every
//! metadata file) in one PUT.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig, StorageFactory};
use iceberg::{Error, ErrorKind};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};
use serde::{Deserialize, Serialize};

/// Bytes a writer buffers before it switches to a multipart upload.
const SINGLE_PUT: usize = 8 << 20;

/// Resolved S3 settings: what the builder of each bucket's client needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// `AES256` (SSE-S3) or `aws:kms` (SSE-KMS), if any.
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
}

/// Builds [`S3Storage`] from the settings it was made with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3StorageFactory(pub S3Settings);

#[typetag::serde]
impl StorageFactory for S3StorageFactory {
    fn build(&self, _config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(S3Storage::new(self.0.clone())))
    }
}

/// One client per bucket, made on first use and shared by its clones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3Storage {
    settings: S3Settings,
    #[serde(skip)]
    clients: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
}

fn error(what: &str, path: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unexpected, format!("{what} {path}: {e}"))
}

impl S3Storage {
    /// A storage with no client made yet.
    pub fn new(settings: S3Settings) -> Self {
        Self { settings, clients: Arc::default() }
    }

    /// The bucket's client and the object's key, for `s3://bucket/key`.
    pub(crate) fn locate(&self, path: &str) -> iceberg::Result<(Arc<dyn ObjectStore>, Key)> {
        let rest = path
            .strip_prefix("s3://")
            .or_else(|| path.strip_prefix("s3a://"))
            .ok_or_else(|| Error::new(ErrorKind::DataInvalid, format!("{path} is not an s3:// location")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let client = match clients.get(bucket) {
            Some(c) => c.clone(),
            None => {
                let c = self.client(bucket).map_err(|e| error("cannot reach bucket", bucket, e))?;
                clients.insert(bucket.to_owned(), c.clone());
                c
            }
        };
        let key = Key::parse(key).map_err(|e| Error::new(ErrorKind::DataInvalid, format!("{path}: {e}")))?;
        Ok((client, key))
    }

    fn client(&self, bucket: &str) -> object_store::Result<Arc<dyn ObjectStore>> {
        let s = &self.settings;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&s.region)
            .with_access_key_id(&s.access_key_id)
            .with_secret_access_key(&s.secret_access_key)
            .with_virtual_hosted_style_request(!s.path_style)
            .with_retry(retry());
        if let Some(endpoint) = &s.endpoint {
            b = b.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(token) = &s.session_token {
            b = b.with_token(token);
        }
        match (s.sse.as_deref(), &s.sse_kms_key_id) {
            (Some("aws:kms"), Some(key)) => b = b.with_sse_kms_encryption(key),
            (Some(sse), _) => {
                let key: AmazonS3ConfigKey = "aws_server_side_encryption".parse()?;
                b = b.with_config(key, sse);
            }
            (None, _) => {}
        }
        Ok(Arc::new(b.build()?))
    }
}

/// Backoff from 0.2 s to 5 s, for up to two minutes: long enough to ride
/// out a restarted server, which the default (ten quick retries, about
/// 2.5 s in all) is not.
fn retry() -> RetryConfig {
    let backoff =
        BackoffConfig { init_backoff: Duration::from_millis(200), max_backoff: Duration::from_secs(5), base: 2.0 };
    RetryConfig { backoff, max_retries: 30, retry_timeout: Duration::from_secs(120) }
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

#[async_trait]
#[typetag::serde]
impl Storage for S3Storage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        let (client, key) = self.locate(path)?;
        match client.head(&key).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(error("cannot look up", path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        let (client, key) = self.locate(path)?;
        let meta = client.head(&key).await.map_err(|e| error("cannot look up", path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        let (client, key) = self.locate(path)?;
        let got = client.get(&key).await.map_err(|e| error("cannot read", path, e))?;
        got.bytes().await.map_err(|e| error("cannot read", path, e))
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        let (client, key) = self.locate(path)?;
        Ok(Box::new(Reader { client, key, path: path.to_owned() }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        let (client, key) = self.locate(path)?;
        client.put(&key, PutPayload::from(bs)).await.map_err(|e| error("cannot write", path, e))?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let (client, key) = self.locate(path)?;
        Ok(Box::new(Writer { client, key, path: path.to_owned(), buffer: Vec::new(), upload: None }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        let (client, key) = self.locate(path)?;
        match client.delete(&key).await {
            Err(e) if !not_found(&e) => Err(error("cannot delete", path, e)),
            _ => Ok(()),
        }
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        for object in self.list(path).await? {
            self.delete(&object.path).await?;
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_owned()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_owned()))
    }
}

impl S3Storage {
    /// Every object under `prefix` (`s3://bucket/prefix`).
    pub async fn list(&self, prefix: &str) -> iceberg::Result<Vec<super::Listed>> {
        let bucket = prefix.trim_start_matches("s3://").split('/').next().unwrap_or_default().to_owned();
        let (client, key) = self.locate(prefix.trim_end_matches('/'))?;
        let mut out = Vec::new();
        let mut listed = client.list(Some(&key));
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|e| error("cannot list", prefix, e))?;
            out.push(super::Listed {
                path: format!("s3://{bucket}/{}", meta.location),
                size: meta.size,
                modified: meta.last_modified.into(),
                tag: meta.e_tag.unwrap_or_else(|| meta.last_modified.timestamp_micros().to_string()),
            });
        }
        Ok(out)
    }
}

impl S3Storage {
    /// Copies the object at `location` into the local file `to`, streaming.
    pub async fn download(&self, location: &str, to: &std::path::Path) -> iceberg::Result<()> {
        use tokio::io::AsyncWriteExt;
        let (client, key) = self.locate(location)?;
        let got = client.get(&key).await.map_err(|e| error("cannot read", location, e))?;
        let mut file =
            tokio::fs::File::create(to).await.map_err(|e| error("cannot create", &to.display().to_string(), e))?;
        let mut stream = got.into_stream();
        while let Some(bytes) = stream.next().await {
            let bytes = bytes.map_err(|e| error("cannot read", location, e))?;
            file.write_all(&bytes).await.map_err(|e| error("cannot write", &to.display().to_string(), e))?;
        }
        file.flush().await.map_err(|e| error("cannot write", &to.display().to_string(), e))
    }

    /// Moves the object at `from` to `to` (copy, then delete), in one bucket.
    pub async fn rename(&self, from: &str, to: &str) -> iceberg::Result<()> {
        let (client, from_key) = self.locate(from)?;
        let (_, to_key) = self.locate(to)?;
        client.rename(&from_key, &to_key).await.map_err(|e| error("cannot move", from, e))
    }
}

/// Ranged reads of one object.
struct Reader {
    client: Arc<dyn ObjectStore>,
    key: Key,
    path: String,
}

#[async_trait]
impl FileRead for Reader {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        self.client.get_range(&self.key, range).await.map_err(|e| error("cannot read", &self.path, e))
    }
}

/// One object being written: buffered, then uploaded in parts once large.
struct Writer {
    client: Arc<dyn ObjectStore>,
    key: Key,
    path: String,
    buffer: Vec<u8>,
    upload: Option<WriteMultipart>,
}

#[async_trait]
impl FileWrite for Writer {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        if let Some(upload) = &mut self.upload {
            upload.wait_for_capacity(4).await.map_err(|e| error("cannot write", &self.path, e))?;
            upload.put(bs);
            return Ok(());
        }
        self.buffer.extend_from_slice(&bs);
        if self.buffer.len() >= SINGLE_PUT {
            let parts = self.client.put_multipart(&self.key).await.map_err(|e| error("cannot write", &self.path, e))?;
            let mut upload = WriteMultipart::new(parts);
            upload.write(&std::mem::take(&mut self.buffer));
            self.upload = Some(upload);
        }
        Ok(())
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        match self.upload.take() {
            Some(upload) => upload.finish().await.map(drop),
            None => self.client.put(&self.key, PutPayload::from(std::mem::take(&mut self.buffer))).await.map(drop),
        }
        .map_err(|e| error("cannot write", &self.path, e))
    }
}
