//! One backup run, start to end. This module owns the ordering and its rules: the snapshot is
//! checked before it is stored, a record is durable before its backup appears, pending uploads
//! go before the new one, and rotation runs only after a successful backup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;

use crate::archive;
use crate::cancel::Cancel;
use crate::catalog::{Activity, Lock, Method, Record, Store, Upload};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::names::{BackupName, Kind};
use crate::notify;
use crate::offsite;
use crate::progress;
use crate::rotate;
use crate::snapshot;

#[derive(Debug, Clone, Copy, Default)]
pub struct BackupOptions {
    /// Skip Drive entirely (upload and remote rotation).
    pub no_drive: bool,
    /// Use the online backup API instead of `VACUUM INTO`.
    pub no_vacuum: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Partial,
    Failed,
}

/// SPEC.md's `backup --json` object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Status,
    pub backup: Option<BackupJson>,
    pub drive: Option<crate::catalog::DriveRef>,
    pub rotation: RotationJson,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// Not in the JSON: the notes a human summary prints (e.g. "Drive is off").
    #[serde(skip)]
    pub notes: Vec<String>,
    #[serde(skip)]
    pub database: PathBuf,
}

impl Report {
    /// The local backup is safe but a later stage failed: status partial, errors joined.
    pub fn partial(&mut self, error: String) {
        if self.status == Status::Ok {
            self.status = Status::Partial;
        }
        self.error = Some(match self.error.take() {
            Some(first) => format!("{first}; {error}"),
            None => error,
        });
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupJson {
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub source_bytes: u64,
    pub sha256: String,
    pub method: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RotationJson {
    pub deleted: Vec<String>,
    pub remote_deleted: Vec<String>,
}

/// Stage timings for the activity log.
#[derive(Debug, Default)]
pub struct Stages(BTreeMap<String, u64>);

impl Stages {
    pub fn time<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.0
            .insert(name.to_string(), start.elapsed().as_millis() as u64);
        out
    }
    pub fn into_map(self) -> BTreeMap<String, u64> {
        self.0
    }
}

/// A stored backup, made by [`make_backup`].
#[derive(Debug, Clone)]
pub struct Made {
    pub name: BackupName,
    pub path: PathBuf,
    pub record: Record,
}

/// Free space needed for a run: the snapshot (at most the database's size) plus its
/// compressed copy, estimated from the last backup or, failing that, half the database.
fn space_needed(source_bytes: u64, last_backup_bytes: Option<u64>) -> u64 {
    source_bytes + last_backup_bytes.unwrap_or(source_bytes / 2)
}

/// What to back up and how: the live database for `backup`, or for the pre-restore copy.
#[derive(Debug, Clone, Copy)]
pub struct What<'a> {
    pub source: &'a Path,
    pub kind: Kind,
    pub method: Method,
    /// `Pending` when Drive will be tried: a run killed mid-upload leaves the backup
    /// pending, so the next run uploads it.
    pub upload: Upload,
    /// Keep the snapshot even if it fails the integrity check (only for saving a corrupt
    /// live database before a restore replaces it: the evidence is worth keeping).
    pub keep_if_corrupt: bool,
}

/// Snapshot `source`, check it, compress and hash it, record it, and put it in place.
/// Leaves nothing behind on failure. The caller holds `lock`.
pub fn make_backup(
    cfg: &Config,
    store: &Store,
    _lock: &Lock,
    what: What<'_>,
    cancel: &Cancel,
    stages: &mut Stages,
) -> Result<Made> {
    let What {
        source,
        kind,
        method,
        upload,
        keep_if_corrupt,
    } = what;
    let source_bytes = snapshot::check_source(source)?;
    let last = store
        .list(cfg.tz)?
        .into_iter()
        .find(|e| e.name.is_gzip())
        .map(|e| e.bytes);
    let needed = space_needed(source_bytes, last);
    let available = fsutil::available_space(&store.dir).map_err(|e| Error::Io {
        context: format!("cannot read free space of {}", store.dir.display()),
        source: e,
    })?;
    if available < needed {
        return Err(Error::NoSpace {
            dir: store.dir.clone(),
            needed,
            available,
        });
    }

    let stamp = format!("{}-{}", std::process::id(), Utc::now().timestamp_micros());
    let snap_path = store.tmp_dir().join(format!("{stamp}.snapshot"));
    let partial = store.tmp_dir().join(format!("{stamp}.partial"));

    let spinner = progress::spinner("snapshot");
    let snap = stages.time("snapshot", || {
        snapshot::take(source, &snap_path, method, cancel)
    });
    spinner.finish_and_clear();
    let snap = snap?;
    let compressed = match check_and_compress(cfg, source, &snap, &partial, cancel, stages) {
        Err(Error::Corrupt { detail, .. }) if keep_if_corrupt => {
            tracing::warn!(%detail, "keeping a snapshot that fails its integrity check, as asked");
            archive::compress_snapshot(&snap.path, &partial, cfg.gzip_level, cancel, None)
        }
        other => other,
    };
    snapshot::remove_snapshot_files(&snap.path);
    let compressed = compressed?;

    let name = archive::free_name(store, BackupName::at(kind, snap.taken_at, cfg.tz));
    let record = Record {
        name: name.file_name(),
        created: snap.taken_at,
        sha256: compressed.sha256.clone(),
        bytes: compressed.bytes,
        source_bytes: snap.source_bytes,
        snapshot_bytes: snap.bytes,
        method: snap.method,
        sqlite_version: snap.sqlite_version.clone(),
        source: std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf()),
        pinned: false,
        upload,
        drive: None,
    };
    let installed = stages.time("store", || -> Result<PathBuf> {
        if cancel.is_cancelled() {
            return Err(Error::Aborted);
        }
        store.save_record(&record)?;
        archive::install(store, &compressed.partial, &name)
    });
    let path = match installed {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&compressed.partial);
            let _ = store.clean_orphan_record(&name.file_name());
            return Err(e);
        }
    };
    tracing::info!(backup = %name, bytes = record.bytes, source_bytes = record.source_bytes, method = record.method.as_str(), "backup stored");
    Ok(Made { name, path, record })
}

/// Run the integrity check and the compression side by side: both only read the snapshot,
/// and overlapping them is most of what makes a checked backup faster than the one-liner.
/// Whichever fails first stops the other; nothing is accepted unless both succeed.
fn check_and_compress(
    cfg: &Config,
    source: &Path,
    snap: &snapshot::Snapshot,
    partial: &Path,
    cancel: &Cancel,
    stages: &mut Stages,
) -> Result<archive::Compressed> {
    let check_cancel = cancel.child();
    let compress_cancel = cancel.child();
    let bar = progress::bytes_bar(snap.bytes, "compress");
    let ((checked, check_ms), (compressed, compress_ms)) = std::thread::scope(|s| {
        let checker = s.spawn(|| {
            let t = Instant::now();
            let r = snapshot::check_snapshot(snap, source, cfg.snapshot_check, &check_cancel);
            if r.is_err() {
                compress_cancel.cancel();
            }
            (r, t.elapsed())
        });
        let t = Instant::now();
        let mut tick = |n: u64| bar.set_position(n);
        let c = archive::compress_snapshot(
            &snap.path,
            partial,
            cfg.gzip_level,
            &compress_cancel,
            Some(&mut tick),
        );
        if c.is_err() {
            check_cancel.cancel();
        }
        let compress_time = t.elapsed();
        let checked = checker.join().unwrap_or_else(|_| {
            (
                Err(Error::Other("the integrity check panicked".into())),
                Default::default(),
            )
        });
        (checked, (c, compress_time))
    });
    bar.finish_and_clear();
    stages.0.insert("check".into(), check_ms.as_millis() as u64);
    stages
        .0
        .insert("compress".into(), compress_ms.as_millis() as u64);
    match (checked, compressed) {
        (Ok(()), result) => result,
        // The check was stopped because the compression failed: report the real cause.
        (Err(Error::Aborted), Err(e)) => Err(e),
        (Err(e), result) => {
            if let Ok(c) = result {
                let _ = std::fs::remove_file(&c.partial);
            }
            // The compressor's "aborted" is only the echo of the failed check.
            Err(e)
        }
    }
}

/// A run id for the activity log: time and pid are unique enough for one directory.
pub fn run_id() -> String {
    format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    )
}

/// Take the run lock and clean what an interrupted run left (scratch files, orphan records).
pub fn lock_and_clean(store: &Store) -> Result<Lock> {
    let lock = store.lock()?;
    let cleaned = store.clean_leftovers(&lock)?;
    if cleaned > 0 {
        tracing::info!(cleaned, "removed leftovers of an interrupted run");
    }
    Ok(lock)
}

/// Start a run that changes the backup directory: lock, clean, and log its start.
/// Pair with [`end`].
pub fn begin(store: &Store, command: &str) -> Result<(Lock, String)> {
    let lock = lock_and_clean(store)?;
    let run = run_id();
    let mut start = end(&run, command, "", None);
    start.event = "start".into();
    start.status = None;
    store.log_activity(&start)?;
    Ok((lock, run))
}

/// The activity-log line that ends run `run` (extra fields are for the caller to fill).
pub fn end(run: &str, command: &str, status: &str, error: Option<String>) -> Activity {
    Activity {
        at: Utc::now(),
        run: run.to_string(),
        event: "end".into(),
        command: command.into(),
        status: Some(status.into()),
        error,
        backup: None,
        stages_ms: BTreeMap::new(),
        deleted: Vec::new(),
    }
}

/// Append the end of a run; a log that cannot be written is a warning, not a failed run.
pub fn log_end(store: &Store, activity: &Activity) {
    if let Err(e) = store.log_activity(activity) {
        tracing::warn!(error = %e, "could not append to the activity log");
    }
}

/// One whole backup: the `backup` command and each scheduled run of the agent.
/// Err only when the run could not start (configuration, lock); every later failure is in the
/// report, with status and error.
pub fn run_backup(cfg: &Config, opts: BackupOptions, cancel: &Cancel) -> Result<Report> {
    let started = Instant::now();
    let database = cfg.database()?.to_path_buf();
    let store =
        Store::open(&cfg.backup_dir).map_err(|e| notify::run_not_started(cfg, &database, e))?;
    let (lock, run) =
        begin(&store, "backup").map_err(|e| notify::run_not_started(cfg, &database, e))?;
    notify::run_started(cfg);
    let mut stages = Stages::default();
    let mut report = Report {
        status: Status::Ok,
        backup: None,
        drive: None,
        rotation: RotationJson::default(),
        error: None,
        duration_ms: 0,
        notes: Vec::new(),
        database: database.clone(),
    };

    let method = if opts.no_vacuum {
        Method::BackupApi
    } else {
        Method::Vacuum
    };
    let drive_on = cfg.drive.is_some() && !opts.no_drive;
    let what = What {
        source: &database,
        kind: Kind::Backup,
        method,
        upload: if drive_on {
            Upload::Pending
        } else {
            Upload::Off
        },
        keep_if_corrupt: false,
    };
    match make_backup(cfg, &store, &lock, what, cancel, &mut stages) {
        Err(e) => {
            report.status = Status::Failed;
            report.error = Some(e.to_string());
        }
        Ok(made) => {
            report.backup = Some(BackupJson {
                name: made.name.file_name(),
                path: made.path.clone(),
                bytes: made.record.bytes,
                source_bytes: made.record.source_bytes,
                sha256: made.record.sha256.clone(),
                method: made.record.method.as_str(),
            });
            let plan = stages.time("plan", || rotate::plan_local(&store, &cfg.policy, cfg.tz));
            match plan {
                Ok(plan) => {
                    match (&cfg.drive, opts.no_drive) {
                        (_, true) => report.notes.push("Drive skipped (--no-drive)".into()),
                        (None, false) => report.notes.push(
                            "Drive is off (GOOGLE_APPLICATION_CREDENTIALS is not set)".into(),
                        ),
                        (Some(dc), false) => {
                            let name = made.name.file_name();
                            let outcome = stages.time("upload", || {
                                offsite::sync(cfg, dc, &store, &plan, Some(&name))
                            });
                            report.drive = outcome.new;
                            report.rotation.remote_deleted = outcome.remote_deleted;
                            if let Some(e) = outcome.error {
                                report.partial(e);
                            }
                        }
                    }
                    let new = made.name.file_name();
                    let applied =
                        stages.time("rotate", || rotate::apply(&store, &plan, Some(&new)));
                    report.rotation.deleted = applied.deleted.clone();
                    if let Some(line) = applied.error_line() {
                        report.partial(line);
                    }
                }
                Err(e) => report.partial(format!("rotation failed: {e}")),
            }
        }
    }

    stages.time("notify", || notify::run_finished(cfg, &mut report, cancel));
    report.duration_ms = started.elapsed().as_millis() as u64;
    let status = format!("{:?}", report.status).to_lowercase();
    let mut activity = end(&run, "backup", &status, report.error.clone());
    activity.backup = report.backup.as_ref().map(|b| b.name.clone());
    activity.stages_ms = stages.into_map();
    activity.deleted = report.rotation.deleted.clone();
    log_end(&store, &activity);
    drop(lock);
    Ok(report)
}
