//! The Drive side of the commands: `list --remote`, `rotate --remote`, `verify --remote`,
//! `upload --pending` and `restore --from-drive`.

use serde::Serialize;

use crate::catalog::{Entry, Lock, Method, Record, Store, Upload};
use crate::cli::{human_bytes, print_json};
use crate::config::Config;
use crate::error::{Error, ExitStatus, Result};
use crate::names::BackupName;
use crate::{job, offsite, rotate};

fn drive_error(e: crate::drive::DriveError) -> Error {
    Error::Other(e.to_string())
}

pub fn list(cfg: &Config, json: bool) -> Result<ExitStatus> {
    let (drive, _) = offsite::connect(cfg)?;
    let files = offsite::list_remote(&drive, cfg.tz).map_err(drive_error)?;
    if json {
        print_json(&files);
    } else if files.is_empty() {
        println!("no snapkeep backups in the Drive folder");
    } else {
        println!("{:<38} {:>10}  {:<34} LINK", "NAME", "SIZE", "MD5");
        for f in &files {
            println!(
                "{:<38} {:>10}  {:<34} {}",
                f.name,
                f.bytes.map(human_bytes).unwrap_or_default(),
                f.md5.as_deref().unwrap_or("-"),
                f.link
            );
        }
    }
    Ok(ExitStatus::Ok)
}

pub fn rotate(cfg: &Config, dry_run: bool, json: bool) -> Result<ExitStatus> {
    let (drive, _) = offsite::connect(cfg)?;
    let store = Store::existing(&cfg.backup_dir);
    // The real run holds the lock (it must not race a backup's upload) and is logged.
    let run = if dry_run {
        None
    } else {
        Some(job::begin(&Store::open(&cfg.backup_dir)?, "rotate-remote")?)
    };
    let plan = crate::http::block_on(offsite::rotate_remote(
        &drive,
        &store,
        &cfg.policy,
        cfg.tz,
        dry_run,
    ))
    .map_err(drive_error)?;
    if json {
        print_json(&rotate::PlanJson {
            keep: plan
                .decisions
                .iter()
                .filter(|d| d.keep)
                .map(|d| rotate::KeepJson {
                    name: d.name.clone(),
                    reasons: d.reasons.clone(),
                })
                .collect(),
            delete: plan
                .decisions
                .iter()
                .filter(|d| !d.keep)
                .map(|d| rotate::DeleteJson {
                    name: d.name.clone(),
                })
                .collect(),
        });
    } else {
        for d in &plan.decisions {
            let reasons: Vec<String> = d.reasons.iter().map(|r| r.to_string()).collect();
            let action = match (d.keep, dry_run) {
                (true, _) => "keep",
                (false, true) => "delete?",
                (false, false) => "delete",
            };
            println!("{:<38} {:<7} {}", d.name, action, reasons.join(", "));
        }
    }
    if let Some((_lock, run)) = run {
        let status = if plan.error.is_some() { "failed" } else { "ok" };
        let mut activity = job::end(&run, "rotate-remote", status, plan.error.clone());
        activity.deleted = plan.deleted.clone();
        job::log_end(&store, &activity);
    }
    if let Some(e) = plan.error {
        eprintln!("snapkeep: {e}");
        return Ok(ExitStatus::Failure);
    }
    Ok(ExitStatus::Ok)
}

#[derive(Serialize)]
struct RemoteVerified {
    name: String,
    ok: bool,
    error: Option<String>,
}

pub fn verify(cfg: &Config, name: Option<&str>, json: bool) -> Result<ExitStatus> {
    let (drive, _) = offsite::connect(cfg)?;
    let store = Store::existing(&cfg.backup_dir);
    let files = offsite::list_remote(&drive, cfg.tz).map_err(drive_error)?;
    let mut results = Vec::new();
    for f in files.iter().filter(|f| name.is_none_or(|n| n == f.name)) {
        let record = store.record(&f.name)?;
        let r = offsite::verify_remote(f, record.as_ref());
        results.push(RemoteVerified {
            name: f.name.clone(),
            ok: r.is_ok(),
            error: r.err(),
        });
    }
    // Local records say a backup is on Drive, but it is not there: that is bad too.
    for e in store.list(cfg.tz)? {
        let uploaded = e.upload() == Upload::Done;
        let wanted = name.is_none_or(|n| n == e.file_name());
        if uploaded && wanted && !files.iter().any(|f| f.name == e.file_name()) {
            results.push(RemoteVerified {
                name: e.file_name(),
                ok: false,
                error: Some("recorded as uploaded but missing from the Drive folder".into()),
            });
        }
    }
    if let (Some(n), true) = (name, results.is_empty()) {
        return Err(Error::BackupNotFound(format!("{n} (on Drive)")));
    }
    let bad: Vec<&str> = results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.name.as_str())
        .collect();
    if json {
        print_json(&serde_json::json!({"ok": bad.is_empty(), "results": results}));
    } else {
        for r in &results {
            match &r.error {
                None => println!("ok   {} (on Drive)", r.name),
                Some(e) => println!("BAD  {} on Drive: {e}", r.name),
            }
        }
    }
    if bad.is_empty() {
        Ok(ExitStatus::Ok)
    } else {
        eprintln!(
            "snapkeep: {} bad backup(s) on Drive: {}",
            bad.len(),
            bad.join(", ")
        );
        Ok(ExitStatus::Failure)
    }
}

pub fn upload_pending(cfg: &Config) -> Result<ExitStatus> {
    let dc = cfg.drive.as_ref().ok_or_else(|| {
        crate::error::ConfigError("Drive is off: set GOOGLE_APPLICATION_CREDENTIALS".into())
    })?;
    let store = Store::open(&cfg.backup_dir)?;
    let (_lock, run) = job::begin(&store, "upload")?;
    let plan = rotate::plan_local(&store, &cfg.policy, cfg.tz)?;
    let outcome = offsite::sync(cfg, dc, &store, &plan, None);
    for name in &outcome.uploaded {
        println!("uploaded {name}");
    }
    if outcome.uploaded.is_empty() && outcome.error.is_none() {
        println!("nothing pending");
    }
    let status = if outcome.error.is_some() {
        "partial"
    } else {
        "ok"
    };
    job::log_end(
        &store,
        &job::end(&run, "upload", status, outcome.error.clone()),
    );
    match outcome.error {
        Some(e) => {
            eprintln!("snapkeep: {e}");
            Ok(ExitStatus::Partial)
        }
        None => Ok(ExitStatus::Ok),
    }
}

/// Fetch a backup from Drive into the scratch directory as an [`Entry`] whose record carries
/// the SHA-256 Drive holds for it, so the usual verified restore checks the download.
pub fn download_for_restore(
    cfg: &Config,
    store: &Store,
    _lock: &Lock,
    name: &str,
) -> Result<Entry> {
    let (drive, _) = offsite::connect(cfg)?;
    let files = offsite::list_remote(&drive, cfg.tz).map_err(drive_error)?;
    let own = if name == "latest" {
        files
            .iter()
            .find(|f| !f.name.starts_with("pre-restore-"))
            .cloned()
    } else {
        files.iter().find(|f| f.name == name).cloned()
    };
    // Disaster recovery on a new machine: the source id (host + path) differs, so an explicit
    // name is also looked up among every snapkeep backup in the folder, if it is unambiguous.
    let file = match own {
        Some(f) => f,
        None if name != "latest" => {
            let all = crate::http::block_on(drive.list_marked(None)).map_err(drive_error)?;
            let mut named: Vec<_> = all.into_iter().filter(|f| f.name == name).collect();
            match named.len() {
                1 => named.remove(0),
                0 => return Err(Error::BackupNotFound(format!("{name} (on Drive)"))),
                n => {
                    return Err(Error::Other(format!(
                        "{n} backups named {name} on Drive come from different databases or hosts; restore on the machine that made it"
                    )))
                }
            }
        }
        None => return Err(Error::BackupNotFound(format!("{name} (on Drive)"))),
    };
    let file = &file;
    let parsed =
        BackupName::parse(&file.name).ok_or_else(|| Error::BackupNotFound(file.name.clone()))?;
    let sha256 = file.sha256.clone().ok_or_else(|| {
        Error::Other(format!(
            "{} on Drive carries no SHA-256; it was not uploaded by snapkeep",
            file.name
        ))
    })?;
    let local = store.record(&file.name)?;
    if let Some(r) = &local {
        if r.sha256 != sha256 {
            return Err(Error::BadBackup {
                name: file.name.clone(),
                detail: "the SHA-256 on Drive differs from the local record".into(),
            });
        }
    }
    let path = store.tmp_dir().join(&file.name);
    let bytes = crate::http::block_on(drive.download(&file.id, &path)).map_err(drive_error)?;
    let record = local.unwrap_or_else(|| Record {
        name: file.name.clone(),
        created: parsed.instant(cfg.tz),
        sha256,
        bytes,
        source_bytes: 0,
        snapshot_bytes: 0,
        method: Method::Vacuum,
        sqlite_version: String::new(),
        source: Default::default(),
        pinned: false,
        upload: Upload::Done,
        drive: None,
    });
    Ok(Entry {
        name: parsed,
        path,
        bytes,
        record: Some(record),
        record_error: None,
    })
}
