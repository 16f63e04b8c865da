//! The backup directory's own bookkeeping, kept in `BACKUP_DIR/.snapkeep/`:
//!
//! ```text
//! .snapkeep/lock              advisory lock: one run at a time per backup directory
//! .snapkeep/records/NAME.json each backup's facts (hash, sizes, method, upload state, pin)
//! .snapkeep/activity.jsonl    append-only log of every run
//! .snapkeep/tmp/              work in progress; emptied by the next run that holds the lock
//! ```
//! A record is written (fsync + rename) *before* its backup is linked into place, so a backup
//! under its final name always has its facts; a record without a backup (a run killed between
//! the two steps) is ignored and removed by the next run.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::fsutil;
use crate::names::BackupName;

/// How a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `VACUUM INTO`: compacted.
    Vacuum,
    /// SQLite's online backup API (`--no-vacuum`).
    BackupApi,
    /// A plain SQLite file made by the older Python system.
    Legacy,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Vacuum => "vacuum",
            Method::BackupApi => "backup-api",
            Method::Legacy => "legacy",
        }
    }
}

/// Where the backup stands with Drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Upload {
    /// Drive was not configured (or `--no-drive`) when the backup was made.
    #[default]
    Off,
    /// The upload failed; `upload --pending` or the next backup retries it.
    Pending,
    /// On Drive, with the checksums verified.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveRef {
    pub file_id: String,
    pub md5: String,
    pub link: String,
}

/// A backup's facts, stored durably beside it (SPEC.md "Files").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub created: DateTime<Utc>,
    /// SHA-256 of the stored file (the `.db.gz`, or the plain `.db` for legacy backups).
    pub sha256: String,
    /// Size of the stored file.
    pub bytes: u64,
    /// Size of the live database file when the snapshot was taken.
    pub source_bytes: u64,
    /// Size of the uncompressed snapshot.
    pub snapshot_bytes: u64,
    pub method: Method,
    pub sqlite_version: String,
    pub source: PathBuf,
    #[serde(default)]
    pub pinned: bool,
    #[serde(default)]
    pub upload: Upload,
    #[serde(default)]
    pub drive: Option<DriveRef>,
}

/// A backup file found in the directory, with its record when it has one.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: BackupName,
    pub path: PathBuf,
    pub bytes: u64,
    pub record: Option<Record>,
    /// Why the record could not be read, if it could not: such a backup is treated as
    /// protected (it might be pinned) until the record is repaired or removed.
    pub record_error: Option<String>,
}

impl Entry {
    pub fn file_name(&self) -> String {
        self.name.file_name()
    }
    /// The record's exact instant, or the one the name stands for.
    pub fn created(&self, tz: Tz) -> DateTime<Utc> {
        self.record
            .as_ref()
            .map(|r| r.created)
            .unwrap_or_else(|| self.name.instant(tz))
    }
    /// Pre-restore backups and pinned backups are never rotated away.
    pub fn protected(&self) -> bool {
        self.name.is_protected_by_name()
            || self.record.as_ref().is_some_and(|r| r.pinned)
            || self.record_error.is_some()
    }
    pub fn pinned(&self) -> bool {
        self.record.as_ref().is_some_and(|r| r.pinned)
    }
    pub fn upload(&self) -> Upload {
        self.record.as_ref().map(|r| r.upload).unwrap_or_default()
    }
}

/// The backup directory and its bookkeeping.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

/// Held for the length of a run; the OS releases it when the process dies, even by SIGKILL.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// One line of the activity log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub at: DateTime<Utc>,
    pub run: String,
    pub event: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stages_ms: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
}

impl Store {
    /// The store for `dir`, creating the directory (0700) and its bookkeeping if missing.
    pub fn open(dir: &Path) -> Result<Store> {
        let store = Store {
            dir: dir.to_path_buf(),
        };
        for d in [
            dir.to_path_buf(),
            store.state_dir(),
            store.records_dir(),
            store.tmp_dir(),
        ] {
            fsutil::ensure_private_dir(&d)
                .context(format!("cannot create backup directory {}", d.display()))?;
        }
        Ok(store)
    }

    /// The store for reading only: does not create anything (for `list`, `status`).
    pub fn existing(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(".snapkeep")
    }
    pub fn records_dir(&self) -> PathBuf {
        self.state_dir().join("records")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.state_dir().join("tmp")
    }
    pub fn activity_path(&self) -> PathBuf {
        self.state_dir().join("activity.jsonl")
    }
    fn record_path(&self, name: &str) -> PathBuf {
        self.records_dir().join(format!("{name}.json"))
    }

    /// Take the run lock, or fail at once with [`Error::Locked`].
    pub fn lock(&self) -> Result<Lock> {
        let path = self.state_dir().join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .context(format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Locked(self.dir.clone())),
            Err(fs::TryLockError::Error(e)) => {
                Err(e).context(format!("cannot lock {}", path.display()))
            }
        }
    }

    /// Remove what an interrupted run left: scratch files and records without a backup.
    /// Call only while holding the lock.
    pub fn clean_leftovers(&self, _lock: &Lock) -> Result<usize> {
        let mut removed =
            fsutil::clear_dir(&self.tmp_dir()).context("cannot clean the scratch directory")?;
        for entry in fs::read_dir(self.records_dir()).context("cannot read records")? {
            let path = entry.context("cannot read records")?.path();
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            // A temporary of write_atomic left by a killed run.
            if file_name.starts_with('.') && file_name.contains(".tmp-") {
                fs::remove_file(&path).context(format!("cannot remove {}", path.display()))?;
                removed += 1;
                continue;
            }
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if BackupName::parse(name).is_some() && !self.dir.join(name).exists() {
                fs::remove_file(&path).context(format!("cannot remove {}", path.display()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Remove the record of `name` if its backup is not in place (a failed install).
    pub fn clean_orphan_record(&self, name: &str) -> Result<()> {
        if !self.dir.join(name).exists() {
            match fs::remove_file(self.record_path(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context("cannot remove a record"),
            }
        }
        Ok(())
    }

    /// Every backup in the directory, newest first (by instant, then name).
    pub fn list(&self, tz: Tz) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let read = match fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(e).context(format!("cannot read {}", self.dir.display())),
        };
        for item in read {
            let item = item.context(format!("cannot read {}", self.dir.display()))?;
            let Some(name) = item.file_name().to_str().and_then(BackupName::parse) else {
                continue;
            };
            let meta = item.metadata().context("cannot stat a backup")?;
            if !meta.is_file() {
                continue;
            }
            // One damaged record must not stop every backup: report it and carry on.
            let (record, record_error) = match self.record(&name.file_name()) {
                Ok(r) => (r, None),
                Err(e) => {
                    tracing::warn!(backup = %name, error = %e, "unreadable record; the backup is kept until it is repaired");
                    (None, Some(e.to_string()))
                }
            };
            entries.push(Entry {
                path: item.path(),
                bytes: meta.len(),
                record,
                record_error,
                name,
            });
        }
        entries.sort_by_key(|e| std::cmp::Reverse((e.created(tz), e.file_name())));
        Ok(entries)
    }

    /// One backup by file name (or `latest`: the newest).
    pub fn find(&self, name: &str, tz: Tz) -> Result<Entry> {
        let entries = self.list(tz)?;
        let found = if name == "latest" {
            entries
                .into_iter()
                .find(|e| e.name.kind != crate::names::Kind::PreRestore)
        } else {
            entries.into_iter().find(|e| e.file_name() == name)
        };
        found.ok_or_else(|| Error::BackupNotFound(name.to_string()))
    }

    pub fn record(&self, name: &str) -> Result<Option<Record>> {
        let path = self.record_path(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Other(format!("record {} is unreadable: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context(format!("cannot read {}", path.display())),
        }
    }

    pub fn save_record(&self, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        let path = self.record_path(&record.name);
        fsutil::write_atomic(&path, &bytes).context(format!("cannot write {}", path.display()))
    }

    /// Delete a backup, then its record (a record without a file is harmless; the reverse
    /// would be a backup without its facts).
    pub fn delete(&self, entry: &Entry) -> Result<()> {
        fs::remove_file(&entry.path).context(format!("cannot delete {}", entry.path.display()))?;
        match fs::remove_file(self.record_path(&entry.file_name())) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("cannot delete a record"),
        }
        fsutil::sync_dir(&self.dir).context("cannot sync the backup directory")
    }

    /// Append one line to the activity log (O_APPEND, fsync).
    pub fn log_activity(&self, activity: &Activity) -> Result<()> {
        let path = self.activity_path();
        let mut line = serde_json::to_vec(activity).expect("activity serializes");
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .context(format!("cannot open {}", path.display()))?;
        f.write_all(&line)
            .and_then(|_| f.sync_data())
            .context(format!("cannot append to {}", path.display()))
    }

    /// The activity log, oldest first; unparseable lines (a torn last line) are skipped.
    pub fn activity(&self) -> Result<Vec<Activity>> {
        match fs::read_to_string(self.activity_path()) {
            Ok(text) => Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).context("cannot read the activity log"),
        }
    }
}
