//! Proving that backups restore, and restoring them.
//!
//! `verify` recomputes the stored file's SHA-256 while decompressing it into a scratch file,
//! compares it with the record, and runs `PRAGMA integrity_check` on the result. `restore`
//! does the same first, then writes the verified database either to a new file (`--to`) or
//! into the live database *through SQLite's online backup API*, so that other connections and
//! the WAL stay consistent; the live file is never overwritten under a running program.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::StepResult;
use rusqlite::Connection;
use serde::Serialize;

use crate::archive;
use crate::cancel::Cancel;
use crate::catalog::{Entry, Lock, Method, Store};
use crate::config::{Config, SnapshotCheck};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::job::{self, Stages};
use crate::names::Kind;
use crate::snapshot;

#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub name: String,
    pub ok: bool,
    /// Whether the SHA-256 was compared with a record (legacy files may have none).
    pub hash_checked: bool,
    pub error: Option<String>,
}

/// A verified database extracted into the scratch directory; removed on drop.
pub struct Extracted {
    pub path: PathBuf,
}

impl Drop for Extracted {
    fn drop(&mut self) {
        snapshot::remove_snapshot_files(&self.path);
    }
}

/// Extract and check one backup. Ok(Extracted) only if it is sound.
pub fn extract_verified(
    store: &Store,
    _lock: &Lock,
    entry: &Entry,
    cancel: &Cancel,
) -> Result<Extracted> {
    let name = entry.file_name();
    let path = store
        .tmp_dir()
        .join(format!("{}-{}.verify.db", std::process::id(), name));
    snapshot::remove_snapshot_files(&path);
    let sha256 = archive::extract(entry, &path, cancel)?;
    let extracted = Extracted { path };
    if let Some(record) = &entry.record {
        if record.sha256 != sha256 {
            return Err(Error::BadBackup {
                name,
                detail: format!(
                    "SHA-256 mismatch (recorded {}, file has {}): the file changed after it was written",
                    short(&record.sha256),
                    short(&sha256)
                ),
            });
        }
    }
    if let Err(detail) = snapshot::check_integrity(&extracted.path, SnapshotCheck::Full, cancel) {
        return Err(Error::BadBackup {
            name,
            detail: format!("integrity_check failed: {detail}"),
        });
    }
    Ok(extracted)
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// Verify one backup, as a report line (never Err for a bad backup: that is the answer).
pub fn verify_one(store: &Store, lock: &Lock, entry: &Entry, cancel: &Cancel) -> Result<Verified> {
    let name = entry.file_name();
    match extract_verified(store, lock, entry, cancel) {
        Ok(_) => Ok(Verified {
            name,
            ok: true,
            hash_checked: entry.record.is_some(),
            error: None,
        }),
        Err(e @ Error::BadBackup { .. }) => Ok(Verified {
            name,
            ok: false,
            hash_checked: entry.record.is_some(),
            error: Some(e.to_string()),
        }),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    pub restored: String,
    pub target: PathBuf,
    /// The protected backup of the database as it was, for an in-place restore.
    pub saved_as: Option<String>,
}

/// Restore `entry` to `to` (a new file) or, without `to`, into the live database.
pub fn restore(
    cfg: &Config,
    store: &Store,
    lock: &Lock,
    entry: &Entry,
    to: Option<&Path>,
    cancel: &Cancel,
) -> Result<RestoreOutcome> {
    let extracted = extract_verified(store, lock, entry, cancel)?;
    match to {
        Some(target) => {
            restore_to_new_file(&extracted.path, target)?;
            Ok(RestoreOutcome {
                restored: entry.file_name(),
                target: target.to_path_buf(),
                saved_as: None,
            })
        }
        None => {
            let live = cfg.database()?.to_path_buf();
            let saved_as = if live.exists() {
                Some(save_before_restore(cfg, store, lock, &live, cancel)?)
            } else {
                None
            };
            restore_into_live(&extracted.path, &live)?;
            Ok(RestoreOutcome {
                restored: entry.file_name(),
                target: live,
                saved_as,
            })
        }
    }
}

/// Save the live database as a protected `pre-restore-…` backup. A corrupt database — the
/// usual reason to restore — cannot pass `VACUUM INTO` or the integrity check, so it is then
/// copied page by page through the online backup API and kept as it is, for the record.
fn save_before_restore(
    cfg: &Config,
    store: &Store,
    lock: &Lock,
    live: &Path,
    cancel: &Cancel,
) -> Result<String> {
    let what = |method, keep_if_corrupt| job::What {
        source: live,
        kind: Kind::PreRestore,
        method,
        upload: crate::catalog::Upload::Off,
        keep_if_corrupt,
    };
    let mut stages = Stages::default();
    let made = match job::make_backup(
        cfg,
        store,
        lock,
        what(Method::Vacuum, false),
        cancel,
        &mut stages,
    ) {
        Err(Error::Corrupt { .. }) => {
            tracing::warn!("the live database is corrupt; saving it page by page before restoring");
            job::make_backup(
                cfg,
                store,
                lock,
                what(Method::BackupApi, true),
                cancel,
                &mut stages,
            )
        }
        other => other,
    };
    made.map(|m| m.name.file_name()).map_err(|e| {
        Error::Other(format!(
            "could not save the current database before restoring, nothing was restored: {e}"
        ))
    })
}

/// Write a verified database to a new file: refuses to replace an existing one.
fn restore_to_new_file(verified: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        return Err(Error::Other(format!(
            "{} already exists: --to writes a new file; choose another path or remove it",
            target.display()
        )));
    }
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("restore");
    let partial = dir.join(format!(
        ".{file_name}.snapkeep-partial-{}",
        std::process::id()
    ));
    let result = (|| {
        let _ = std::fs::remove_file(&partial);
        std::fs::copy(verified, &partial)?;
        fsutil::make_private(&partial)?;
        std::fs::File::open(&partial)?.sync_all()?;
        // A hard link never replaces an existing file, unlike rename.
        std::fs::hard_link(&partial, target)?;
        std::fs::remove_file(&partial)?;
        fsutil::sync_dir(dir)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::Io {
            context: format!("cannot write {}", target.display()),
            source: e,
        });
    }
    Ok(())
}

/// Copy a verified database into the live one page by page under SQLite's own locking, in one
/// step so no reader ever sees a half-restored database.
fn restore_into_live(verified: &Path, live: &Path) -> Result<()> {
    let source = Connection::open(verified).map_err(|e| sql(verified, e))?;
    let mut dest = Connection::open(live).map_err(|e| sql(live, e))?;
    dest.busy_timeout(Duration::from_secs(30))
        .map_err(|e| sql(live, e))?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut dest).map_err(|e| sql(live, e))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match backup.step(-1).map_err(|e| sql(live, e))? {
                StepResult::Done => break,
                _ if std::time::Instant::now() > deadline => {
                    return Err(Error::Busy {
                        attempts: 1,
                        detail: "the live database stayed locked for 60 s; nothing was restored"
                            .into(),
                    })
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    let ok: String = dest
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| sql(live, e))?;
    if ok != "ok" {
        return Err(Error::Other(format!(
            "restored database fails quick_check: {ok}; the pre-restore backup holds the previous state"
        )));
    }
    Ok(())
}

fn sql(path: &Path, e: rusqlite::Error) -> Error {
    Error::Sqlite {
        context: format!("restore into {} failed", path.display()),
        source: e,
    }
}
