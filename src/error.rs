//! Typed errors for the library. Each message is one line that names the problem and, where
//! there is one, the next thing to do; `main` maps them to the exit codes of SPEC.md.

use std::path::PathBuf;

/// Exit codes promised by SPEC.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    Partial = 3,
    Locked = 4,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A problem with the configuration: always exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Everything a backup, verify or restore can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error(
        "another snapkeep run holds the lock on {0}; wait for it to finish (nothing was changed)"
    )]
    Locked(PathBuf),

    #[error("database not found: {0} (check DATABASE_URL)")]
    DatabaseMissing(PathBuf),

    #[error("database cannot be read: {path}: {reason}")]
    DatabaseUnreadable { path: PathBuf, reason: String },

    #[error("not a SQLite database: {0}")]
    NotSqlite(PathBuf),

    #[error("database is corrupt: {path}: {detail}; no backup was made (the existing backups are untouched)")]
    Corrupt { path: PathBuf, detail: String },

    #[error("database stayed busy (locked by another connection) through {attempts} snapshot attempts: {detail}")]
    Busy { attempts: u32, detail: String },

    #[error("not enough free space in {dir}: need about {needed} bytes, {available} available")]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },

    #[error("disk full: {0}; free some space and run again (partial files were removed)")]
    DiskFull(String),

    #[error("backup not found: {0} (see `snapkeep list`)")]
    BackupNotFound(String),

    #[error("backup {name} is bad: {detail}")]
    BadBackup { name: String, detail: String },

    #[error("the run was aborted before it finished; no partial files were left")]
    Aborted,

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },

    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The exit code this error ends a command with.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Config(_) => ExitStatus::Usage,
            Error::Locked(_) => ExitStatus::Locked,
            _ => ExitStatus::Failure,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a human context to io and SQLite errors without losing the source.
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| {
            if is_disk_full(&source) {
                return Error::DiskFull(context.into());
            }
            Error::Io {
                context: context.into(),
                source,
            }
        })
    }
}

impl<T> Context<T> for std::result::Result<T, rusqlite::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Sqlite {
            context: context.into(),
            source,
        })
    }
}

/// ENOSPC and EDQUOT both mean "the disk is full" to the user.
pub fn is_disk_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
