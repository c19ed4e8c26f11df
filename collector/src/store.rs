//! The storage root: every write is atomic and every key written once.
//!
//! - Local directory: a file is written under a hidden staging name in
//!   `<root>/_staging/` (`.<pid>-<n>.tmp`), fsynced, then hard-linked to its
//!   key and its directory fsynced. The link fails if the key exists, so of
//!   two concurrent writers of one key exactly one stores it (two collectors
//!   on one directory included). object_store's `LocalFileSystem` does the
//!   same but never fsyncs: after a power loss a batch already acknowledged
//!   (and deleted from the agent's spool) could be empty; and its staging
//!   name (`<key>#<n>`) sits next to the data. Ours is in a directory that
//!   starts with `_` (Spark and Hive skip it) and ends in `.tmp` (no
//!   `*.parquet` glob matches it).
//! - S3-compatible store (object_store): `PutMode::Create`, a conditional
//!   put (`If-None-Match: *`); S3 writes an object whole or not at all.
//!
//! Keys are `/`-separated paths relative to the root (`strand_schemas::layout`).

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

use super::config::StorageConfig;

/// Where a local root keeps files being written.
pub const STAGING_DIR: &str = "_staging";

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

/// One stored object: its key relative to the root, size and time of its last write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
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

    fn object_path(prefix: &ObjectPath, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{prefix}/{key}").trim_start_matches('/'))
    }

    /// Stores `data` under `key` unless the key already holds an object.
    pub async fn put_once(&self, key: &str, data: Bytes) -> anyhow::Result<PutOutcome> {
        match self {
            Store::Local { root } => {
                let (root, dest) = (root.clone(), root.join(key));
                tokio::task::spawn_blocking(move || put_local(&root, &dest, &data)).await?
            }
            Store::Object { store, prefix, .. } => {
                let path = Self::object_path(prefix, key);
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

    /// Writes `data` under `key`, replacing what is there, atomically (a
    /// reader sees the old object or the new one, whole).
    pub async fn put_replace(&self, key: &str, data: Bytes) -> anyhow::Result<()> {
        match self {
            Store::Local { root } => {
                let (root, dest) = (root.clone(), root.join(key));
                tokio::task::spawn_blocking(move || replace_local(&root, &dest, &data)).await?
            }
            Store::Object { store, prefix, .. } => {
                store.put(&Self::object_path(prefix, key), data.into()).await?;
                Ok(())
            }
        }
    }

    /// The whole object at `key`.
    pub async fn get(&self, key: &str) -> anyhow::Result<Bytes> {
        match self {
            Store::Local { root } => {
                let path = root.join(key);
                let data =
                    tokio::fs::read(&path).await.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                Ok(Bytes::from(data))
            }
            Store::Object { store, prefix, url } => {
                let r = store
                    .get(&Self::object_path(prefix, key))
                    .await
                    .map_err(|e| anyhow::anyhow!("{url}/{key}: {e}"))?;
                Ok(r.bytes().await?)
            }
        }
    }

    /// Bytes `range` of the object at `key`.
    pub async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> anyhow::Result<Bytes> {
        match self {
            Store::Local { root } => {
                let path = root.join(key);
                tokio::task::spawn_blocking(move || {
                    use std::io::{Read, Seek, SeekFrom};
                    let mut f = std::fs::File::open(&path)
                        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
                    f.seek(SeekFrom::Start(range.start))?;
                    let mut buf = vec![0; (range.end - range.start) as usize];
                    f.read_exact(&mut buf).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                    Ok(Bytes::from(buf))
                })
                .await?
            }
            Store::Object { store, prefix, url } => Ok(store
                .get_range(&Self::object_path(prefix, key), range)
                .await
                .map_err(|e| anyhow::anyhow!("{url}/{key}: {e}"))?),
        }
    }

    /// Removes the empty directories under (and including) `dir` of a local root.
    pub fn remove_empty_dirs(&self, dir: &str) {
        fn walk(d: &Path) {
            if let Ok(entries) = std::fs::read_dir(d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(d); // fails unless empty
        }
        if let Store::Local { root } = self {
            walk(&root.join(dir));
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        match self {
            Store::Local { root } => Ok(root.join(key).symlink_metadata().is_ok()),
            Store::Object { store, prefix, .. } => match store.head(&Self::object_path(prefix, key)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Removes `key`; a missing key is not an error.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Store::Local { root } => match std::fs::remove_file(root.join(key)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(anyhow::anyhow!("cannot remove {}: {e}", root.join(key).display())),
            },
            Store::Object { store, prefix, .. } => match store.delete(&Self::object_path(prefix, key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Every object under the directory `dir` (recursively), staging files excluded.
    pub async fn list(&self, dir: &str) -> anyhow::Result<Vec<Entry>> {
        match self {
            Store::Local { root } => {
                let (root, dir) = (root.clone(), dir.to_string());
                tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    list_local(&root, &root.join(&dir), &mut out)?;
                    Ok(out)
                })
                .await?
            }
            Store::Object { store, prefix, .. } => {
                let base = Self::object_path(prefix, dir);
                let strip = if prefix.as_ref().is_empty() { 0 } else { prefix.as_ref().len() + 1 };
                let metas: Vec<_> = store.list(Some(&base)).try_collect().await?;
                Ok(metas
                    .into_iter()
                    .filter(|m| m.location.filename().is_some_and(|n| !strand_schemas::layout::is_staging_name(n)))
                    .map(|m| Entry {
                        key: m.location.as_ref()[strip.min(m.location.as_ref().len())..].to_string(),
                        size: m.size,
                        modified: m.last_modified.into(),
                    })
                    .collect())
            }
        }
    }

    /// Names of the directories directly under `dir` (`date=…`, `hour=…`).
    pub async fn list_dirs(&self, dir: &str) -> anyhow::Result<Vec<String>> {
        match self {
            Store::Local { root } => {
                let path = root.join(dir);
                let entries = match std::fs::read_dir(&path) {
                    Ok(e) => e,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(anyhow::anyhow!("cannot list {}: {e}", path.display())),
                };
                let mut out = Vec::new();
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir())
                        && let Some(name) = e.file_name().to_str()
                    {
                        out.push(name.to_string());
                    }
                }
                out.sort();
                Ok(out)
            }
            Store::Object { store, prefix, .. } => {
                let base = Self::object_path(prefix, dir);
                let r = store.list_with_delimiter(Some(&base)).await?;
                let mut out: Vec<String> =
                    r.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect();
                out.sort();
                Ok(out)
            }
        }
    }

    /// Removes staging files a crash left behind (local directory only):
    /// those older than `age`, so that a second collector's writes in
    /// progress on the same directory are left alone. Returns how many.
    pub fn remove_stale_staging(&self, age: Duration) -> usize {
        match self {
            Store::Local { root } => remove_staging_under(&root.join(STAGING_DIR), age),
            Store::Object { .. } => 0,
        }
    }
}

fn list_local(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow::anyhow!("cannot list {}: {e}", dir.display())),
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            list_local(root, &path, out)?;
        } else if kind.is_file() {
            let name = e.file_name();
            if name.to_str().is_none_or(strand_schemas::layout::is_staging_name) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue }; // removed meanwhile
            let Some(key) = path.strip_prefix(root).ok().and_then(|k| k.to_str()) else { continue };
            out.push(Entry {
                key: key.to_string(),
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    Ok(())
}

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to a new staging file under `<root>/_staging`, fsynced.
fn stage(root: &Path, data: &[u8]) -> anyhow::Result<PathBuf> {
    let dir = root.join(STAGING_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    loop {
        let n = STAGING_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{}-{n}.tmp", std::process::id()));
        let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(anyhow::anyhow!("cannot create {}: {e}", path.display())),
        };
        let written = file.write_all(data).and_then(|()| file.sync_all());
        drop(file);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(anyhow::anyhow!("cannot write {}: {e}", path.display()));
        }
        return Ok(path);
    }
}

/// Creates the directories of `dir`; returns the first one it created.
fn create_dirs(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let first_new = dir.ancestors().take_while(|d| !d.exists()).last().map(Path::to_path_buf);
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    Ok(first_new)
}

/// Makes the entry of `dir` and of the directories created for it durable.
fn sync_dirs(dir: &Path, first_new: Option<PathBuf>) -> anyhow::Result<()> {
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
    Ok(())
}

fn put_local(root: &Path, dest: &Path, data: &[u8]) -> anyhow::Result<PutOutcome> {
    if dest.symlink_metadata().is_ok() {
        return Ok(PutOutcome::Duplicate);
    }
    let dir = dest.parent().ok_or_else(|| anyhow::anyhow!("{} has no parent directory", dest.display()))?;
    // Directories this write creates must reach the disk too.
    let first_new = create_dirs(dir)?;
    let staging = stage(root, data)?;
    let linked = std::fs::hard_link(&staging, dest);
    let _ = std::fs::remove_file(&staging);
    let outcome = match linked {
        Ok(()) => PutOutcome::Stored,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(PutOutcome::Duplicate),
        Err(e) => return Err(anyhow::anyhow!("cannot link {} to {}: {e}", staging.display(), dest.display())),
    };
    sync_dirs(dir, first_new)?;
    Ok(outcome)
}

fn replace_local(root: &Path, dest: &Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = dest.parent().ok_or_else(|| anyhow::anyhow!("{} has no parent directory", dest.display()))?;
    let first_new = create_dirs(dir)?;
    let staging = stage(root, data)?;
    if let Err(e) = std::fs::rename(&staging, dest) {
        let _ = std::fs::remove_file(&staging);
        return Err(anyhow::anyhow!("cannot rename {} to {}: {e}", staging.display(), dest.display()));
    }
    sync_dirs(dir, first_new)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot fsync directory {}: {e}", dir.display()))
}

fn remove_staging_under(dir: &Path, age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let path = entry.path();
        let old =
            entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d >= age));
        let staging = entry.file_name().to_str().is_some_and(strand_schemas::layout::is_staging_name);
        if staging && old && entry.file_type().is_ok_and(|t| t.is_file()) {
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
        // Nothing but the batch is left in its directory, nothing in staging.
        let names: Vec<_> =
            std::fs::read_dir(dest.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["batch-0001.parquet"]);
        assert_eq!(std::fs::read_dir(dir.path().join(STAGING_DIR)).unwrap().count(), 0);
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
        let staging = dir.path().join(STAGING_DIR);
        let leaf = dir.path().join("t/date=2024-03-01/cluster=c/node=n");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(leaf.join("a.parquet"), b"x").unwrap();
        for name in [".1-0.tmp", ".1-1.tmp", "notes"] {
            std::fs::write(staging.join(name), b"x").unwrap();
        }
        // A young staging file may be a write in progress of another collector.
        assert_eq!(local(dir.path()).remove_stale_staging(Duration::from_secs(3600)), 0);
        assert_eq!(local(dir.path()).remove_stale_staging(Duration::ZERO), 2);
        let names: Vec<_> =
            std::fs::read_dir(&staging).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["notes"]);
        assert!(leaf.join("a.parquet").exists());
    }

    #[tokio::test]
    async fn listing_and_replacing() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path());
        store.put_once("t/a/x.parquet", Bytes::from_static(b"1")).await.unwrap();
        store.put_once("t/b/y.parquet", Bytes::from_static(b"22")).await.unwrap();
        store.put_replace("t/b/y.parquet", Bytes::from_static(b"333")).await.unwrap();
        let mut keys: Vec<_> = store.list("t").await.unwrap().into_iter().map(|e| (e.key, e.size)).collect();
        keys.sort();
        assert_eq!(keys, [("t/a/x.parquet".to_string(), 1), ("t/b/y.parquet".to_string(), 3)]);
        assert_eq!(store.list_dirs("t").await.unwrap(), ["a", "b"]);
        assert!(store.list("nothing").await.unwrap().is_empty());
        store.delete("t/a/x.parquet").await.unwrap();
        store.delete("t/a/x.parquet").await.unwrap();
        assert!(!store.exists("t/a/x.parquet").await.unwrap());
        assert_eq!(store.get("t/b/y.parquet").await.unwrap().as_ref(), b"333");
    }
}
