//! Consistent snapshots of a live SQLite database, never by copying its bytes: a plain copy
//! misses committed pages still in the WAL and can catch a half-written page.
//!
//! * `VACUUM INTO` (default) writes a compacted copy inside one read transaction.
//! * `--no-vacuum` uses the online backup API, chosen per journal mode (see [`backup_api`]).
//!
//! Every snapshot must pass `PRAGMA integrity_check` (or `quick_check`) before it is accepted.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{backup::StepResult, Connection, ErrorCode, OpenFlags};

use crate::cancel::Cancel;
use crate::catalog::Method;
use crate::config::SnapshotCheck;
use crate::error::{Error, Result};

/// How long one statement waits for another connection's lock before SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a whole snapshot is tried when the database stays busy.
const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub path: PathBuf,
    pub bytes: u64,
    pub source_bytes: u64,
    pub method: Method,
    pub sqlite_version: String,
    /// When the snapshot's read transaction began (the backup's point in time).
    pub taken_at: DateTime<Utc>,
}

/// Check that `source` is an existing, readable SQLite file, with one clear error if not.
pub fn check_source(source: &Path) -> Result<u64> {
    let mut file = match File::open(source) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::DatabaseMissing(source.to_path_buf()))
        }
        Err(e) => {
            return Err(Error::DatabaseUnreadable {
                path: source.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    let meta = file.metadata().map_err(|e| Error::DatabaseUnreadable {
        path: source.to_path_buf(),
        reason: e.to_string(),
    })?;
    if meta.is_dir() {
        return Err(Error::DatabaseUnreadable {
            path: source.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    let mut header = [0u8; 16];
    match file.read_exact(&mut header) {
        Ok(()) if &header == b"SQLite format 3\0" => Ok(meta.len()),
        Ok(()) => Err(Error::NotSqlite(source.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(Error::NotSqlite(source.to_path_buf()))
        }
        Err(e) => Err(Error::DatabaseUnreadable {
            path: source.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Open an existing database without ever creating one; read-only if we may not write.
pub fn open_existing(path: &Path) -> Result<Connection> {
    let rw = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, rw)
        .or_else(|_| {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        })
        .map_err(|e| sqlite_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sqlite_error(path, e))?;
    Ok(conn)
}

/// Take a snapshot of `source` into `dest` (which must not exist), retrying while busy. It is
/// not accepted until [`check_snapshot`] passes (the job runs the check alongside the
/// compression, so the two overlap). On any error `dest` is removed.
pub fn take(source: &Path, dest: &Path, method: Method, cancel: &Cancel) -> Result<Snapshot> {
    let source_bytes = check_source(source)?;
    let result = take_with_retries(source, dest, method, cancel).and_then(|taken_at| {
        let bytes = std::fs::metadata(dest)
            .map_err(|e| Error::Other(format!("snapshot vanished: {e}")))?
            .len();
        Ok(Snapshot {
            path: dest.to_path_buf(),
            bytes,
            source_bytes,
            method,
            sqlite_version: rusqlite::version().to_string(),
            taken_at,
        })
    });
    if result.is_err() {
        remove_snapshot_files(dest);
    }
    result
}

fn take_with_retries(
    source: &Path,
    dest: &Path,
    method: Method,
    cancel: &Cancel,
) -> Result<DateTime<Utc>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        remove_snapshot_files(dest);
        let taken_at = Utc::now();
        let result = open_existing(source).and_then(|conn| {
            install_cancel(&conn, cancel);
            match method {
                Method::BackupApi => backup_api(&conn, source, dest, cancel),
                _ => vacuum_into(&conn, source, dest),
            }
        });
        if cancel.is_cancelled() {
            return Err(Error::Aborted);
        }
        match result {
            Ok(()) => return Ok(taken_at),
            Err(Error::Busy { detail, .. }) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, %detail, "database busy, retrying the snapshot");
                sleep(Duration::from_secs(attempt as u64));
            }
            Err(Error::Busy { detail, .. }) => {
                return Err(Error::Busy {
                    attempts: attempt,
                    detail,
                })
            }
            Err(e) => return Err(e),
        }
    }
}

/// SQLite calls this every few thousand VM steps; returning true interrupts the statement.
fn install_cancel(conn: &Connection, cancel: &Cancel) {
    let cancel = cancel.clone();
    conn.progress_handler(10_000, Some(move || cancel.is_cancelled()));
}

fn vacuum_into(conn: &Connection, source: &Path, dest: &Path) -> Result<()> {
    let dest_text = dest
        .to_str()
        .ok_or_else(|| Error::Other(format!("path is not UTF-8: {}", dest.display())))?;
    conn.execute("VACUUM INTO ?1", [dest_text])
        .map(|_| ())
        .map_err(|e| sqlite_error(source, e))
}

/// The online backup API, chosen per journal mode:
///
/// * WAL: one step (`-1`). The copy runs inside one read transaction; in WAL mode readers never
///   block writers, so nothing waits, and the snapshot is exactly one committed state.
/// * Rollback journal: one step would hold a SHARED lock for the whole copy and keep every
///   writer out until it ends. So copy in steps that release the lock between them, letting
///   writers commit. But a write from another connection restarts a stepped backup from page
///   one, and a steady writer could starve it forever: after a few restarts (or a time limit)
///   finish the rest in one step, accepting one short pause for the writers.
fn backup_api(conn: &Connection, source: &Path, dest: &Path, cancel: &Cancel) -> Result<()> {
    let wal = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .map_err(|e| sqlite_error(source, e))?
        .eq_ignore_ascii_case("wal");
    let mut target = Connection::open(dest).map_err(|e| sqlite_error(dest, e))?;
    let backup =
        rusqlite::backup::Backup::new(conn, &mut target).map_err(|e| sqlite_error(source, e))?;
    const PAGES_PER_STEP: i32 = 4096;
    const MAX_RESTARTS: u32 = 3;
    const STEP_BUDGET: Duration = Duration::from_secs(10);
    let started = Instant::now();
    let mut restarts = 0;
    let mut last_remaining = i32::MAX;
    let mut busy_since: Option<Instant> = None;
    loop {
        if cancel.is_cancelled() {
            return Err(Error::Aborted);
        }
        let one_step = wal || restarts >= MAX_RESTARTS || started.elapsed() > STEP_BUDGET;
        let pages = if one_step { -1 } else { PAGES_PER_STEP };
        match backup.step(pages).map_err(|e| sqlite_error(source, e))? {
            StepResult::Done => return Ok(()),
            StepResult::More => {
                busy_since = None;
                let remaining = backup.progress().remaining;
                if remaining > last_remaining {
                    restarts += 1;
                    tracing::debug!(restarts, "a writer restarted the stepped backup");
                }
                last_remaining = remaining;
                // Give writers a moment to take the lock between steps.
                sleep(Duration::from_millis(2));
            }
            StepResult::Busy | StepResult::Locked => {
                let since = *busy_since.get_or_insert_with(Instant::now);
                if since.elapsed() > BUSY_TIMEOUT {
                    return Err(Error::Busy {
                        attempts: 1,
                        detail: "the database stayed locked during the online backup".into(),
                    });
                }
                sleep(Duration::from_millis(20));
            }
            _ => sleep(Duration::from_millis(20)),
        }
    }
}

pub fn check_name(check: SnapshotCheck) -> &'static str {
    match check {
        SnapshotCheck::Full => "PRAGMA integrity_check",
        SnapshotCheck::Quick => "PRAGMA quick_check",
    }
}

/// Check a snapshot of `source`: a failure means the source database is corrupt.
pub fn check_snapshot(
    snap: &Snapshot,
    source: &Path,
    check: SnapshotCheck,
    cancel: &Cancel,
) -> Result<()> {
    check_integrity(&snap.path, check, cancel).map_err(|detail| {
        if cancel.is_cancelled() {
            Error::Aborted
        } else {
            Error::Corrupt {
                path: source.to_path_buf(),
                detail: format!("the snapshot failed {}: {detail}", check_name(check)),
            }
        }
    })
}

/// Run `integrity_check` / `quick_check` on a database file we own (a snapshot or a
/// decompressed backup). Err carries the first problems SQLite reports.
pub fn check_integrity(
    path: &Path,
    check: SnapshotCheck,
    cancel: &Cancel,
) -> std::result::Result<(), String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| e.to_string())?;
    install_cancel(&conn, cancel);
    let sql = match check {
        SnapshotCheck::Full => "PRAGMA integrity_check(5)",
        SnapshotCheck::Quick => "PRAGMA quick_check(5)",
    };
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    if rows == ["ok"] {
        Ok(())
    } else {
        Err(one_line(&rows.join("; "), 300))
    }
}

/// SQLite's multi-line reports folded into one line of at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let folded: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("***"))
        .collect();
    let folded = folded.join("; ");
    if folded.chars().count() <= max {
        folded
    } else {
        let cut: String = folded.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// Map SQLite's errors on the source to the one-line errors users see.
fn sqlite_error(path: &Path, e: rusqlite::Error) -> Error {
    let code = e.sqlite_error_code();
    match code {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => Error::Busy {
            attempts: 1,
            detail: e.to_string(),
        },
        Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        Some(ErrorCode::NotADatabase) => Error::NotSqlite(path.to_path_buf()),
        Some(ErrorCode::OperationInterrupted) => Error::Aborted,
        Some(ErrorCode::DiskFull) => {
            Error::DiskFull(format!("while writing the snapshot of {}", path.display()))
        }
        Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => {
            Error::DatabaseUnreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        }
        _ => Error::Sqlite {
            context: format!("snapshot of {} failed", path.display()),
            source: e,
        },
    }
}

/// Remove a snapshot file and the journal files SQLite may have left beside it.
pub fn remove_snapshot_files(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}
