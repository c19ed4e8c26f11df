//! Where the report stores what it computed (`--store`): `collective_stalls`
//! and `findings` in the dataset itself, a local directory or an S3 prefix.
//! Every object has a name fixed by what it holds (an hour and a cluster, a
//! range), so re-running writes the same keys; each write is atomic (a
//! hidden staging file renamed locally, one PUT on S3), so a reader sees
//! the old object or the new one, never half, never both.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

pub enum Output {
    Local(std::path::PathBuf),
    Object { store: Arc<dyn ObjectStore>, prefix: ObjectPath, url: String },
}

impl Output {
    /// The dataset root `location` (a directory, file:// URL or s3://bucket/prefix) for writing.
    pub fn open(location: &str) -> anyhow::Result<Self> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_url(location)
                .build()
                .with_context(|| format!("cannot open the S3 dataset {location}"))?;
            let prefix = rest.split_once('/').map(|(_, p)| p.trim_end_matches('/')).unwrap_or("");
            return Ok(Self::Object { store: Arc::new(store), prefix: ObjectPath::from(prefix), url: location.into() });
        }
        let path = location.strip_prefix("file://").unwrap_or(location);
        if path.contains("://") {
            anyhow::bail!("{location}: only directories, file:// and s3:// datasets can be written");
        }
        let p = std::path::Path::new(path);
        if !p.is_dir() {
            anyhow::bail!("dataset {location} is not a directory");
        }
        Ok(Self::Local(p.to_path_buf()))
    }

    /// A scratch directory (a report without `--store`).
    pub fn local(dir: &std::path::Path) -> Self {
        Self::Local(dir.to_path_buf())
    }

    fn path(prefix: &ObjectPath, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{prefix}/{key}").trim_start_matches('/'))
    }

    /// Writes `data` at `key` (relative to the root), replacing what is there.
    pub async fn put(&self, key: &str, data: Bytes) -> anyhow::Result<()> {
        match self {
            Self::Local(root) => {
                let path = root.join(key);
                tokio::task::spawn_blocking(move || {
                    strand_schemas::hive::write_atomic(&path, |w| {
                        use std::io::Write;
                        w.write_all(&data)
                            .map_err(|source| strand_schemas::hive::WriteError::Io { path: path.clone(), source })
                    })
                })
                .await??;
                Ok(())
            }
            Self::Object { store, prefix, url } => {
                store.put(&Self::path(prefix, key), data.into()).await.with_context(|| format!("{url}/{key}"))?;
                Ok(())
            }
        }
    }

    /// The object at `key`, or `None`.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        match self {
            Self::Local(root) => match std::fs::read(root.join(key)) {
                Ok(d) => Ok(Some(Bytes::from(d))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", root.join(key).display())),
            },
            Self::Object { store, prefix, url } => match store.get(&Self::path(prefix, key)).await {
                Ok(r) => Ok(Some(r.bytes().await?)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(anyhow::anyhow!("{url}/{key}: {e}")),
            },
        }
    }

    /// Keys of every object under the directory `dir`.
    pub async fn list(&self, dir: &str) -> anyhow::Result<Vec<String>> {
        match self {
            Self::Local(root) => {
                fn walk(root: &std::path::Path, d: &std::path::Path, out: &mut Vec<String>) {
                    let Ok(entries) = std::fs::read_dir(d) else { return };
                    for e in entries.flatten() {
                        let p = e.path();
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            walk(root, &p, out);
                        } else if let Some(k) = p.strip_prefix(root).ok().and_then(|k| k.to_str()) {
                            out.push(k.to_string());
                        }
                    }
                }
                let mut out = Vec::new();
                walk(root, &root.join(dir), &mut out);
                Ok(out)
            }
            Self::Object { store, prefix, .. } => {
                let strip = if prefix.as_ref().is_empty() { 0 } else { prefix.as_ref().len() + 1 };
                let metas: Vec<_> = store.list(Some(&Self::path(prefix, dir))).try_collect().await?;
                Ok(metas.into_iter().map(|m| m.location.as_ref()[strip..].to_string()).collect())
            }
        }
    }

    /// Removes `key`; a missing key is not an error.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Self::Local(root) => match std::fs::remove_file(root.join(key)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(anyhow::anyhow!("cannot remove {}: {e}", root.join(key).display()))
                }
                _ => Ok(()),
            },
            Self::Object { store, prefix, .. } => match store.delete(&Self::path(prefix, key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// The location to open as a [`crate::Dataset`].
    pub fn location(&self) -> String {
        match self {
            Self::Local(p) => p.display().to_string(),
            Self::Object { url, .. } => url.clone(),
        }
    }
}
