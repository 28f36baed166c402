//! The report spool: reports Postgres could not take in time, kept as files on this machine's
//! disk until a drainer records them. A report counts as kept only once it is durable: written
//! under a temporary name, fsync'd, renamed into place, and the directory fsync'd, so neither a
//! crash nor a power cut leaves half a report or loses an acknowledged one.
//!
//! Entries are named by a hash of their id (the report's request id): writing one twice keeps
//! one, and the name carries nothing a reader of the directory could use.

use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
};

const EXTENSION: &str = "json";
/// Entries the drainer could not record for a reason other than Postgres being away (a bug, a
/// hand edit): set aside for an operator to look at, not retried forever.
const REJECTED: &str = "rejected";

#[derive(Clone, Debug)]
pub struct Spool {
    dir: Arc<PathBuf>,
}

impl Spool {
    /// Opens (creating) the directory and removes temporary files a crash left behind: their
    /// reports were never acknowledged.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir.join(REJECTED))?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path)?;
            }
        }
        Ok(Self {
            dir: Arc::new(dir.to_owned()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str) -> PathBuf {
        let name = hex::encode(Sha256::digest(id.as_bytes()));
        self.dir.join(format!("{name}.{EXTENSION}"))
    }

    /// Keeps `value` under `id`, durably, replacing an earlier entry of that id.
    pub async fn put<T: Serialize>(&self, id: &str, value: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
        let path = self.path(id);
        let dir = self.dir.clone();
        blocking(move || {
            // Its own temporary name: two writers of one id must not share a file.
            let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
            {
                let mut file = fs::File::create(&tmp)?;
                io::Write::write_all(&mut file, &bytes)?;
                file.sync_all()?;
            }
            fs::rename(&tmp, &path)?;
            sync_dir(&dir)
        })
        .await
    }

    pub async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        id: &str,
    ) -> io::Result<Option<T>> {
        let path = self.path(id);
        blocking(move || match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Every entry, oldest first, each read or the reason it cannot be.
    pub async fn entries<T: DeserializeOwned + Send + 'static>(
        &self,
    ) -> io::Result<Vec<(PathBuf, Result<T, String>)>> {
        let dir = self.dir.clone();
        blocking(move || {
            let mut found = Vec::new();
            for entry in fs::read_dir(&*dir)? {
                let entry = entry?;
                let path = entry.path();
                if path.extension().is_none_or(|e| e != EXTENSION) {
                    continue;
                }
                let modified = entry.metadata()?.modified()?;
                let value = fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
                found.push((modified, path, value));
            }
            found.sort_by_key(|(modified, ..)| *modified);
            Ok(found.into_iter().map(|(_, p, v)| (p, v)).collect())
        })
        .await
    }

    /// Drops an entry once its report is recorded.
    pub async fn remove(&self, entry: &Path) -> io::Result<()> {
        let (entry, dir) = (entry.to_owned(), self.dir.clone());
        blocking(move || {
            match fs::remove_file(&entry) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            sync_dir(&dir)
        })
        .await
    }

    /// Sets an entry aside that cannot be recorded (see [`REJECTED`]).
    pub async fn reject(&self, entry: &Path) -> io::Result<()> {
        let (entry, dir) = (entry.to_owned(), self.dir.clone());
        blocking(move || {
            let name = entry
                .file_name()
                .ok_or_else(|| io::Error::other("no name"))?;
            fs::rename(&entry, dir.join(REJECTED).join(name))?;
            sync_dir(&dir)
        })
        .await
    }

    /// Entries waiting.
    pub fn len(&self) -> io::Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(&*self.dir)? {
            if entry?.path().extension().is_some_and(|e| e == EXTENSION) {
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        self.len().map(|n| n == 0)
    }
}

/// A rename is durable only once its directory is synced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cw-spool-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn keeps_entries_across_reopening_and_one_per_id() {
        let dir = temp_dir();
        let spool = Spool::open(&dir).unwrap();
        spool.put("req-1", &"first".to_owned()).await.unwrap();
        spool.put("req-2", &"second".to_owned()).await.unwrap();
        spool.put("req-1", &"first again".to_owned()).await.unwrap();
        // A crash mid-write leaves a temporary file: never an entry.
        fs::write(dir.join("deadbeef.tmp"), b"{").unwrap();
        let reopened = Spool::open(&dir).unwrap();
        assert!(!dir.join("deadbeef.tmp").exists());
        assert_eq!(reopened.len().unwrap(), 2);
        assert_eq!(
            reopened.get::<String>("req-1").await.unwrap().as_deref(),
            Some("first again")
        );
        let entries = reopened.entries::<String>().await.unwrap();
        assert_eq!(entries.len(), 2);
        for (path, _) in &entries {
            reopened.remove(path).await.unwrap();
        }
        assert!(reopened.is_empty().unwrap());
        assert_eq!(reopened.get::<String>("req-1").await.unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn unreadable_entries_are_reported_and_can_be_set_aside() {
        let dir = temp_dir();
        let spool = Spool::open(&dir).unwrap();
        fs::write(dir.join("0123.json"), b"not json").unwrap();
        let entries = spool.entries::<String>().await.unwrap();
        assert_eq!(entries.len(), 1);
        assert!(entries[0].1.is_err());
        spool.reject(&entries[0].0).await.unwrap();
        assert!(spool.is_empty().unwrap());
        assert!(dir.join(REJECTED).join("0123.json").exists());
        fs::remove_dir_all(dir).unwrap();
    }
}
