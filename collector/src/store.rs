//! Where accepted batches go: each key is written once, atomically.
//!
//! - Local directory: the file is written under a staging name
//!   (`<key>#<n>`), fsynced, then hard-linked to its key and its directory
//!   fsynced. The link fails if the key exists, so of two concurrent uploads
//!   of one batch exactly one is stored. object_store's `LocalFileSystem`
//!   does the same but never fsyncs: after a power loss a batch already
//!   acknowledged (and deleted from the agent's spool) could be empty. The
//!   staging name is the one object_store uses, so its listing hides it, and
//!   it does not end in `.parquet`, so DataFusion never reads it.
//! - S3-compatible store (object_store): `PutMode::Create`, a conditional
//!   put (`If-None-Match: *`); S3 writes an object whole or not at all.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

use super::config::StorageConfig;

/// The last storage probe, so that `/healthz` probes at most once a second.
#[derive(Default)]
pub struct Health {
    last: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl Health {
    pub async fn check(&self, store: &Store) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, r)) = last.as_ref()
            && at.elapsed() < std::time::Duration::from_secs(1)
        {
            return r.clone();
        }
        let r = store.probe().await.map_err(|e| format!("{e:#}"));
        if let Err(e) = &r {
            tracing::error!("storage is not writable: {e}");
        }
        *last = Some((std::time::Instant::now(), r.clone()));
        r
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    Duplicate,
}

pub enum Store {
    Local { root: PathBuf },
    Object { store: Arc<dyn ObjectStore>, prefix: ObjectPath, url: String },
}

impl Store {
    /// Opens (and for a directory, creates) the storage root.
    pub fn open(cfg: &StorageConfig) -> anyhow::Result<Self> {
        if cfg.root.starts_with("s3://") {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(&cfg.root);
            if let Some(endpoint) = &cfg.endpoint {
                b = b.with_endpoint(endpoint);
            }
            if let Some(region) = &cfg.region {
                b = b.with_region(region);
            }
            if cfg.allow_http {
                b = b.with_allow_http(true);
            }
            let store = b.build().map_err(|e| anyhow::anyhow!("key `storage.root`: {}: {e}", cfg.root))?;
            // s3://bucket/a/b → prefix a/b inside the bucket.
            let prefix = cfg.root["s3://".len()..].split_once('/').map(|(_, p)| p).unwrap_or("");
            return Ok(Store::Object {
                store: Arc::new(store),
                prefix: ObjectPath::from(prefix),
                url: cfg.root.clone(),
            });
        }
        let root = PathBuf::from(&cfg.root);
        std::fs::create_dir_all(&root)
            .map_err(|e| anyhow::anyhow!("key `storage.root`: cannot create {}: {e}", root.display()))?;
        Ok(Store::Local { root })
    }

    pub fn describe(&self) -> String {
        match self {
            Store::Local { root } => root.display().to_string(),
            Store::Object { url, .. } => url.clone(),
        }
    }

    /// Stores `data` under `key` unless the key already holds a batch.
    pub async fn put_once(&self, key: &str, data: Bytes) -> anyhow::Result<PutOutcome> {
        match self {
            Store::Local { root } => {
                let dest = root.join(key);
                tokio::task::spawn_blocking(move || put_local(&dest, &data)).await?
            }
            Store::Object { store, prefix, .. } => {
                let path = ObjectPath::from(format!("{prefix}/{key}").trim_start_matches('/'));
                match store.head(&path).await {
                    Ok(_) => return Ok(PutOutcome::Duplicate),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
                match store.put_opts(&path, data.clone().into(), opts).await {
                    Ok(_) => Ok(PutOutcome::Stored),
                    Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                        Ok(PutOutcome::Duplicate)
                    }
                    // A store without conditional puts: the head above is the
                    // dedupe; a race of two uploads writes the same bytes twice.
                    Err(object_store::Error::NotImplemented { .. }) => {
                        store.put(&path, data.into()).await?;
                        Ok(PutOutcome::Stored)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Writes, syncs and removes a small probe file at the root: storage that
    /// cannot take a write (read-only, full, gone) fails here with the reason.
    pub async fn probe(&self) -> anyhow::Result<()> {
        match self {
            Store::Local { root } => {
                let path = root.join(format!(".strand-probe#{}", std::process::id()));
                tokio::task::spawn_blocking(move || {
                    let written = std::fs::File::create(&path)
                        .and_then(|mut f| f.write_all(b"strand").and_then(|()| f.sync_all()));
                    let _ = std::fs::remove_file(&path);
                    written.map_err(|e| anyhow::anyhow!("cannot write to {}: {e}", path.display()))
                })
                .await?
            }
            Store::Object { store, prefix, url } => {
                let path = ObjectPath::from(format!("{prefix}/.strand-probe").trim_start_matches('/'));
                store
                    .put(&path, Bytes::from_static(b"strand").into())
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot write to {url}: {e}"))?;
                let _ = store.delete(&path).await;
                Ok(())
            }
        }
    }

    /// Removes staging files a crash left behind (local directory only).
    /// One collector owns a local root: at start, none of its writes is in
    /// progress. Returns the number of files removed.
    pub fn remove_stale_staging(&self) -> usize {
        match self {
            Store::Local { root } => remove_staging_under(root, 0),
            Store::Object { .. } => 0,
        }
    }
}

/// `<key>#<digits>`: the staging name of a write in progress.
pub fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(base, n)| base.ends_with(".parquet") && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn put_local(dest: &Path, data: &[u8]) -> anyhow::Result<PutOutcome> {
    if dest.symlink_metadata().is_ok() {
        return Ok(PutOutcome::Duplicate);
    }
    let dir = dest.parent().ok_or_else(|| anyhow::anyhow!("{} has no parent directory", dest.display()))?;
    // Directories this write creates must reach the disk too.
    let first_new = dir.ancestors().take_while(|d| !d.exists()).last().map(Path::to_path_buf);
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;

    let (mut file, staging) = create_staging(dest)?;
    let written = file.write_all(data).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(anyhow::anyhow!("cannot write {}: {e}", staging.display()));
    }
    let linked = std::fs::hard_link(&staging, dest);
    let _ = std::fs::remove_file(&staging);
    let outcome = match linked {
        Ok(()) => PutOutcome::Stored,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(PutOutcome::Duplicate),
        Err(e) => return Err(anyhow::anyhow!("cannot link {} to {}: {e}", staging.display(), dest.display())),
    };
    sync_dir(dir)?;
    // A new directory's entry lives in its parent: sync up to the parent of
    // the first directory this write created.
    if let Some(first_new) = first_new {
        for d in dir.ancestors().skip(1) {
            sync_dir(d)?;
            if Some(d) == first_new.parent() {
                break;
            }
        }
    }
    Ok(outcome)
}

fn create_staging(dest: &Path) -> anyhow::Result<(std::fs::File, PathBuf)> {
    for n in 1u32.. {
        let mut name = dest.as_os_str().to_owned();
        name.push(format!("#{n}"));
        let path = PathBuf::from(name);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(anyhow::anyhow!("cannot create {}: {e}", path.display())),
        }
    }
    unreachable!("u32 staging names exhausted")
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot fsync directory {}: {e}", dir.display()))
}

/// Staging files sit at depth 4 below the root (`table/date/cluster/node`).
fn remove_staging_under(dir: &Path, depth: usize) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && depth < 4 {
            removed += remove_staging_under(&path, depth + 1);
        } else if kind.is_file() && depth == 4 && entry.file_name().to_str().is_some_and(is_staging_name) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("cannot remove the stale staging file {}: {e}", path.display()),
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &Path) -> Store {
        Store::open(&StorageConfig { root: dir.to_str().unwrap().into(), ..Default::default() }).unwrap()
    }

    #[tokio::test]
    async fn a_key_is_stored_once_even_by_concurrent_writers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(local(dir.path()));
        let key = "t/date=2024-03-01/cluster=c/node=n/batch-0001.parquet";
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.put_once(key, Bytes::from(vec![i as u8; 1000])).await.unwrap() })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        assert_eq!(outcomes.iter().filter(|o| **o == PutOutcome::Stored).count(), 1, "{outcomes:?}");
        let dest = dir.path().join(key);
        assert_eq!(std::fs::read(&dest).unwrap().len(), 1000);
        // Nothing but the batch is left in its directory.
        let names: Vec<_> =
            std::fs::read_dir(dest.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["batch-0001.parquet"]);
        assert_eq!(store.put_once(key, Bytes::from_static(b"other")).await.unwrap(), PutOutcome::Duplicate);
        assert_eq!(std::fs::read(&dest).unwrap().len(), 1000, "a duplicate must not overwrite");
    }

    #[tokio::test]
    async fn an_object_store_key_is_stored_once() {
        // S3 is not reachable from CI; object_store's in-memory store honours
        // PutMode::Create the same way, which is the logic under test.
        let memory = Arc::new(object_store::memory::InMemory::new());
        let store = Arc::new(Store::Object {
            store: memory.clone(),
            prefix: ObjectPath::from("fleet/strand"),
            url: "memory://".into(),
        });
        let key = "t/date=2024-03-01/cluster=c/node=n/batch-0001.parquet";
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.put_once(key, Bytes::from(vec![i as u8; 10])).await.unwrap() })
            })
            .collect();
        let mut stored = 0;
        for t in tasks {
            stored += usize::from(t.await.unwrap() == PutOutcome::Stored);
        }
        assert_eq!(stored, 1);
        let path = ObjectPath::from(format!("fleet/strand/{key}"));
        assert_eq!(memory.head(&path).await.unwrap().size, 10);
    }

    #[test]
    fn stale_staging_files_are_removed_and_batches_kept() {
        let dir = tempfile::tempdir().unwrap();
        let leaf = dir.path().join("t/date=2024-03-01/cluster=c/node=n");
        std::fs::create_dir_all(&leaf).unwrap();
        for name in ["a.parquet", "a.parquet#1", "b.parquet#12", "c.parquet#x", "notes#1"] {
            std::fs::write(leaf.join(name), b"x").unwrap();
        }
        assert_eq!(local(dir.path()).remove_stale_staging(), 2);
        let mut names: Vec<_> =
            std::fs::read_dir(&leaf).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["a.parquet", "c.parquet#x", "notes#1"]);
    }
}
