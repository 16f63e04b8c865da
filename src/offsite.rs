//! The Drive stages of a run, on top of `drive`: upload what is pending and the new backup
//! (oldest first, only backups rotation keeps), record the result, then rotate Drive with the
//! same policy. A Drive failure never touches a local backup: it leaves it pending (exit 3).

use chrono_tz::Tz;

use crate::catalog::{DriveRef, Record, Store, Upload};
use crate::config::{Config, DriveConfig};
use crate::drive::{self, upload, Drive, DriveError, RemoteFile};
use crate::names::BackupName;
use crate::retention::{self, Decision, Policy};
use crate::rotate::Planned;

/// What the Drive stage did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The new backup on Drive, when it was uploaded.
    pub new: Option<DriveRef>,
    pub uploaded: Vec<String>,
    pub remote_deleted: Vec<String>,
    /// One line when something failed; the local backups are safe either way.
    pub error: Option<String>,
}

fn set_upload(
    store: &Store,
    name: &str,
    upload: Upload,
    drive: Option<DriveRef>,
) -> Result<(), String> {
    let mut record: Record = store
        .record(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{name} has no record"))?;
    record.upload = upload;
    if drive.is_some() {
        record.drive = drive;
    }
    store.save_record(&record).map_err(|e| e.to_string())
}

/// Upload pending backups that `plan` keeps (oldest first), then `new`, then rotate Drive.
pub fn sync(
    cfg: &Config,
    dc: &DriveConfig,
    store: &Store,
    plan: &[Planned],
    new: Option<&str>,
) -> Outcome {
    crate::http::block_on(sync_async(cfg, dc, store, plan, new))
}

async fn sync_async(
    cfg: &Config,
    dc: &DriveConfig,
    store: &Store,
    plan: &[Planned],
    new: Option<&str>,
) -> Outcome {
    let mut out = Outcome::default();
    // Oldest first: the plan is newest first.
    let mut queue: Vec<&Planned> = plan
        .iter()
        .rev()
        .filter(|p| {
            p.decision.keep
                && p.entry.upload() == Upload::Pending
                && Some(p.decision.name.as_str()) != new
        })
        .collect();
    if let Some(n) = new {
        queue.extend(plan.iter().filter(|p| p.decision.name == n));
    }
    let mark_rest_pending = |rest: &[&Planned]| {
        for p in rest {
            if let Err(e) = set_upload(store, &p.decision.name, Upload::Pending, None) {
                tracing::warn!(backup = %p.decision.name, error = %e, "could not mark the backup pending");
            }
        }
    };

    let source = match source_of(cfg) {
        Ok(s) => s,
        Err(e) => {
            mark_rest_pending(&queue);
            out.error = Some(e.to_string());
            return out;
        }
    };
    let drive = match Drive::connect(dc, &source).await {
        Ok(d) => d,
        Err(e) => {
            mark_rest_pending(&queue);
            out.error = Some(upload_failed(&e, queue.len()));
            return out;
        }
    };
    let remote = match drive.list_backups().await {
        Ok(r) => r,
        Err(e) => {
            mark_rest_pending(&queue);
            out.error = Some(upload_failed(&e, queue.len()));
            return out;
        }
    };

    for (i, p) in queue.iter().enumerate() {
        let name = p.decision.name.as_str();
        let Some(record) = p.entry.record.as_ref() else {
            continue;
        };
        let result = match adoptable(&remote, name, record, &p.entry.path) {
            // Uploaded before, but the run ended before it could say so: adopt it.
            Some(existing) => Ok(existing),
            None => {
                upload::upload(&drive, &p.entry.path, name, &record.sha256, dc.chunk_bytes).await
            }
        };
        match result {
            Ok(file) => {
                let md5 = file.md5.clone().unwrap_or_default();
                let dref = DriveRef {
                    file_id: file.id.clone(),
                    md5,
                    link: file.link.clone(),
                };
                tracing::info!(backup = name, file_id = %file.id, "uploaded to Drive");
                if let Err(e) = set_upload(store, name, Upload::Done, Some(dref.clone())) {
                    tracing::warn!(backup = name, error = %e, "could not record the upload");
                }
                if Some(name) == new {
                    out.new = Some(dref);
                }
                out.uploaded.push(name.to_string());
            }
            Err(e) => {
                mark_rest_pending(&queue[i..]);
                out.error = Some(upload_failed(&e, queue.len() - i));
                return out;
            }
        }
    }

    // Remote rotation, only after every upload succeeded.
    match rotate_remote(&drive, store, &cfg.policy, cfg.tz, false).await {
        Ok(plan) => {
            out.remote_deleted = plan.deleted;
            out.error = plan.error;
        }
        Err(e) => out.error = Some(format!("rotation on Drive failed: {e}")),
    }
    out
}

/// A copy already on Drive that is byte-for-byte this backup (same SHA-256 tag *and* Drive's
/// MD5 equal to the local file's), so it need not be sent again. A tag alone proves nothing:
/// it is written when an upload starts, before any byte is verified.
fn adoptable(
    remote: &[RemoteFile],
    name: &str,
    record: &Record,
    path: &std::path::Path,
) -> Option<RemoteFile> {
    let candidates: Vec<&RemoteFile> = remote
        .iter()
        .filter(|r| r.name == name && r.sha256.as_deref() == Some(record.sha256.as_str()))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let (md5, sha256) = upload::md5_and_sha256(path).ok()?;
    if sha256 != record.sha256 {
        return None;
    }
    candidates
        .into_iter()
        .find(|r| {
            r.md5
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(&md5))
        })
        .cloned()
}

/// This install's source id: the database (on this host) whose backups it handles.
pub fn source_of(cfg: &Config) -> Result<String, crate::error::Error> {
    Ok(drive::source_id(cfg.database()?))
}

fn upload_failed(e: &DriveError, count: usize) -> String {
    format!("upload to Drive failed ({e}); {count} backup(s) kept locally and marked pending for the next run")
}

/// A remote rotation plan and what applying it did.
#[derive(Debug, Default)]
pub struct RemotePlan {
    pub decisions: Vec<Decision>,
    pub deleted: Vec<String>,
    pub error: Option<String>,
}

/// Plan (and unless `dry_run`, apply) the retention policy to snapkeep's files on Drive.
/// Pre-restore backups and backups pinned locally are protected there too.
pub async fn rotate_remote(
    drive: &Drive,
    store: &Store,
    policy: &Policy,
    tz: Tz,
    dry_run: bool,
) -> Result<RemotePlan, DriveError> {
    let files = drive.list_backups().await?;
    let entries: Vec<retention::Entry> = files
        .iter()
        .filter_map(|f| {
            let name = BackupName::parse(&f.name)?;
            let record = store.record(&f.name).ok().flatten();
            Some(retention::Entry {
                name: f.name.clone(),
                created: record
                    .as_ref()
                    .map(|r| r.created)
                    .unwrap_or_else(|| name.instant(tz)),
                protected: name.is_protected_by_name() || record.as_ref().is_some_and(|r| r.pinned),
            })
        })
        .collect();
    let decisions =
        retention::plan(&entries, policy, tz).map_err(|e| DriveError::Local(e.to_string()))?;
    let mut out = RemotePlan::default();
    if !dry_run {
        let mut failed = Vec::new();
        for d in decisions.iter().filter(|d| !d.keep) {
            // Duplicate names on Drive (a re-upload): every copy of a dropped name goes.
            for f in files.iter().filter(|f| f.name == d.name) {
                match drive.remove(f).await {
                    Ok(()) => {
                        tracing::info!(backup = %d.name, "removed from Drive by rotation");
                        if !out.deleted.contains(&d.name) {
                            out.deleted.push(d.name.clone());
                        }
                    }
                    Err(e) => failed.push(format!("{} ({e})", d.name)),
                }
            }
        }
        if !failed.is_empty() {
            out.error = Some(format!(
                "rotation on Drive could not remove: {}",
                failed.join(", ")
            ));
        }
    }
    out.decisions = decisions;
    Ok(out)
}

/// Connect for a command (list/rotate/verify/restore --remote/--from-drive, upload --pending).
pub fn connect(cfg: &Config) -> Result<(Drive, &DriveConfig), crate::error::Error> {
    let dc = cfg.drive.as_ref().ok_or_else(|| {
        crate::error::ConfigError(
            "Drive is off: set GOOGLE_APPLICATION_CREDENTIALS (see `snapkeep auth`)".into(),
        )
    })?;
    let source = source_of(cfg)?;
    let drive = crate::http::block_on(Drive::connect(dc, &source))
        .map_err(|e| crate::error::Error::Other(e.to_string()))?;
    Ok((drive, dc))
}

/// The remote listing, newest first by name time.
pub fn list_remote(drive: &Drive, tz: Tz) -> Result<Vec<RemoteFile>, DriveError> {
    let mut files = crate::http::block_on(drive.list_backups())?;
    files.sort_by_key(|f| std::cmp::Reverse(BackupName::parse(&f.name).map(|n| n.instant(tz))));
    Ok(files)
}

/// Check a remote backup against the local record: Drive's md5 and the SHA-256 it carries.
pub fn verify_remote(file: &RemoteFile, record: Option<&Record>) -> Result<(), String> {
    let Some(sha) = file.sha256.as_deref() else {
        return Err("no SHA-256 in its appProperties".into());
    };
    if let Some(r) = record {
        if r.sha256 != sha {
            return Err(format!(
                "SHA-256 on Drive {} differs from the record {}",
                &sha[..12.min(sha.len())],
                &r.sha256[..12]
            ));
        }
        if let (Some(d), Some(md5)) = (&r.drive, &file.md5) {
            if !d.md5.is_empty() && !d.md5.eq_ignore_ascii_case(md5) {
                return Err(format!(
                    "MD5 on Drive {md5} differs from the one recorded at upload {}",
                    d.md5
                ));
            }
        }
    }
    if file.md5.is_none() {
        return Err("Drive reports no md5Checksum".into());
    }
    Ok(())
}
