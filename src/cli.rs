//! The subcommands: each a thin function over the library that prints and picks an exit code.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::cancel::Cancel;
use crate::catalog::{Entry, Method, Record, Store, Upload};
use crate::config::{Config, Overrides, RawEnv};
use crate::error::{Error, ExitStatus, Result};
use crate::job::{self, BackupOptions, Status};
use crate::rotate;

#[derive(Debug, Parser)]
#[command(
    name = "snapkeep",
    version,
    about = "Consistent, verified, rotated SQLite backups"
)]
pub struct Cli {
    /// Database to back up (wins over DATABASE_URL): a path or sqlite:///… URL.
    #[arg(long, global = true, value_name = "PATH")]
    pub database: Option<String>,
    /// Backup directory (wins over BACKUP_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One backup now: snapshot, check, gzip + hash, store, upload, rotate, notify.
    Backup(BackupArgs),
    /// Backups, newest first.
    List {
        /// List snapkeep's backups on Drive instead.
        #[arg(long)]
        remote: bool,
        #[arg(long)]
        json: bool,
    },
    /// Apply the retention policy (7 daily / 4 weekly / 12 monthly by default).
    Rotate(RotateArgs),
    /// Check backups: SHA-256 against the record, decompress, PRAGMA integrity_check.
    Verify {
        /// A backup's file name (default: all backups).
        name: Option<String>,
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Check the copies on Drive: their SHA-256 and MD5 against the records.
        #[arg(long)]
        remote: bool,
        #[arg(long)]
        json: bool,
    },
    /// Restore a verified backup (the current database is saved first as pre-restore-…).
    Restore {
        /// A backup's file name, or `latest`.
        name: String,
        /// Write a new database file here instead of restoring into the live database.
        #[arg(long, value_name = "PATH")]
        to: Option<PathBuf>,
        /// Confirm: restore replaces the live database's content.
        #[arg(long)]
        yes: bool,
        /// Download the backup from Drive (checking its SHA-256) instead of using the local copy.
        #[arg(long)]
        from_drive: bool,
    },
    /// Upload the backups whose upload failed earlier.
    Upload {
        #[arg(long, required = true)]
        pending: bool,
    },
    /// Google OAuth consent for Drive; writes the credentials file (mode 0600).
    Auth,
    /// Protect a backup from rotation.
    Pin { name: String },
    /// Release a pinned backup to rotation.
    Unpin { name: String },
    /// The effective configuration (secrets redacted), validated.
    Config,
    /// The agent: back up on BACKUP_SCHEDULE until SIGTERM/SIGINT (catches up a missed run).
    Run,
    /// Last run and its outcome, last success, next run, counts, pending uploads.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Default)]
pub struct BackupArgs {
    /// Skip Google Drive (upload and remote rotation).
    #[arg(long)]
    pub no_drive: bool,
    /// Snapshot with SQLite's online backup API instead of VACUUM INTO (fast, no compaction).
    #[arg(long)]
    pub no_vacuum: bool,
    /// Print SPEC.md's JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Show what would be kept and deleted, with reasons; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rotate snapkeep's backups on Drive instead.
    #[arg(long)]
    pub remote: bool,
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
}

/// Parse, run, and return the process exit code.
pub fn main_with_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitStatus::Usage.code()
            } else {
                0
            };
        }
    };
    match run(cli) {
        Ok(status) => status.code(),
        Err(e) => {
            eprintln!("snapkeep: {}", one_line(&e.to_string()));
            e.exit_status().code()
        }
    }
}

/// Errors are one line; a configuration error lists one problem per line.
fn one_line(text: &str) -> String {
    text.to_string()
}

fn load_config(cli: &Cli) -> Result<(Config, RawEnv)> {
    let raw = RawEnv::from_process()?;
    let mut flags = Overrides {
        database: cli.database.clone(),
        backup_dir: cli.backup_dir.clone(),
        ..Overrides::default()
    };
    if let Command::Rotate(r) = &cli.command {
        flags.keep_daily = r.keep_daily;
        flags.keep_weekly = r.keep_weekly;
        flags.keep_monthly = r.keep_monthly;
        flags.keep_last = r.keep_last;
    }
    let cfg = Config::load(&raw, &flags)?;
    crate::logging::init(cfg.log_format, matches!(cli.command, Command::Run));
    Ok((cfg, raw))
}

pub fn run(cli: Cli) -> Result<ExitStatus> {
    let (cfg, raw) = load_config(&cli)?;
    match &cli.command {
        Command::Backup(a) => backup(&cfg, a),
        Command::List { remote: true, json } => crate::remote_cli::list(&cfg, *json),
        Command::List { json, .. } => list(&cfg, *json),
        Command::Rotate(a) if a.remote => crate::remote_cli::rotate(&cfg, a.dry_run, a.json),
        Command::Rotate(a) => rotate_cmd(&cfg, a),
        Command::Verify {
            name,
            remote: true,
            json,
            ..
        } => crate::remote_cli::verify(&cfg, name.as_deref(), *json),
        Command::Verify { name, json, .. } => verify(&cfg, name.as_deref(), *json),
        Command::Restore {
            name,
            to,
            yes,
            from_drive,
        } => restore(&cfg, name, to.as_deref(), *yes, *from_drive),
        Command::Upload { .. } => crate::remote_cli::upload_pending(&cfg),
        Command::Auth => {
            let out = crate::auth::run(
                cfg.client_secret_file.as_deref(),
                cfg.drive.as_ref().map(|d| d.credentials.as_path()),
            )?;
            println!("wrote {} (mode 0600)", out.display());
            if cfg.drive.is_none() {
                println!(
                    "set GOOGLE_APPLICATION_CREDENTIALS={} to turn Drive on",
                    out.display()
                );
            }
            Ok(ExitStatus::Ok)
        }
        Command::Pin { name } => pin(&cfg, name, true),
        Command::Unpin { name } => pin(&cfg, name, false),
        Command::Run => crate::daemon::main(cfg),
        Command::Status { json } => status(&cfg, *json),
        Command::Config => {
            for line in cfg.describe(&raw) {
                println!("{line}");
            }
            println!("# configuration is valid");
            Ok(ExitStatus::Ok)
        }
    }
}

pub fn print_json<T: Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// Human sizes: 1.2 MiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn backup(cfg: &Config, a: &BackupArgs) -> Result<ExitStatus> {
    let opts = BackupOptions {
        no_drive: a.no_drive,
        no_vacuum: a.no_vacuum,
    };
    let report = match job::run_backup(cfg, opts, &Cancel::new()) {
        Ok(r) => r,
        Err(e) if a.json && !matches!(e, Error::Config(_)) => {
            print_json(&serde_json::json!({
                "status": "failed", "backup": null, "drive": null,
                "rotation": {"deleted": [], "remote_deleted": []},
                "error": e.to_string(), "duration_ms": 0
            }));
            eprintln!("snapkeep: {e}");
            return Ok(e.exit_status());
        }
        Err(e) => return Err(e),
    };
    if a.json {
        print_json(&report);
    } else if let Some(b) = &report.backup {
        println!(
            "{}  {} (database {}, {})  sha256 {}  in {:.1} s",
            b.path.display(),
            human_bytes(b.bytes),
            human_bytes(b.source_bytes),
            b.method,
            &b.sha256[..16],
            report.duration_ms as f64 / 1000.0
        );
        for note in &report.notes {
            println!("{note}");
        }
        if let Some(d) = &report.drive {
            println!("uploaded to Drive: {}", d.link);
        }
        if !report.rotation.deleted.is_empty() {
            println!(
                "rotation deleted {} old backup(s): {}",
                report.rotation.deleted.len(),
                report.rotation.deleted.join(", ")
            );
        }
    }
    if let Some(err) = &report.error {
        let what = match report.status {
            Status::Partial => "backup is safe locally, but",
            _ => "backup failed:",
        };
        eprintln!("snapkeep: {what} {err}");
    }
    Ok(match report.status {
        Status::Ok => ExitStatus::Ok,
        Status::Partial => ExitStatus::Partial,
        Status::Failed => ExitStatus::Failure,
    })
}

#[derive(Serialize)]
struct ListJson<'a> {
    name: String,
    path: &'a std::path::Path,
    bytes: u64,
    created: String,
    kind: &'static str,
    method: Option<&'static str>,
    sha256: Option<&'a str>,
    upload: Upload,
    drive: Option<&'a crate::catalog::DriveRef>,
    protected: bool,
    pinned: bool,
}

fn list(cfg: &Config, json: bool) -> Result<ExitStatus> {
    let store = Store::existing(&cfg.backup_dir);
    let entries = store.list(cfg.tz)?;
    if json {
        let rows: Vec<ListJson> = entries
            .iter()
            .map(|e| ListJson {
                name: e.file_name(),
                path: &e.path,
                bytes: e.bytes,
                created: e.created(cfg.tz).with_timezone(&cfg.tz).to_rfc3339(),
                kind: match e.name.kind {
                    crate::names::Kind::Backup => "backup",
                    crate::names::Kind::PreRestore => "pre-restore",
                    crate::names::Kind::Legacy => "legacy",
                },
                method: e.record.as_ref().map(|r| r.method.as_str()),
                sha256: e.record.as_ref().map(|r| r.sha256.as_str()),
                upload: e.upload(),
                drive: e.record.as_ref().and_then(|r| r.drive.as_ref()),
                protected: e.protected(),
                pinned: e.pinned(),
            })
            .collect();
        print_json(&rows);
        return Ok(ExitStatus::Ok);
    }
    if entries.is_empty() {
        println!("no backups in {}", cfg.backup_dir.display());
        return Ok(ExitStatus::Ok);
    }
    println!(
        "{:<38} {:>10}  {:<25} {:<9} {:<8} PROTECTED",
        "NAME", "SIZE", "CREATED", "CHECKSUM", "UPLOAD"
    );
    for e in &entries {
        let checksum = if e.record.is_some() {
            "recorded"
        } else {
            "none"
        };
        let upload = match e.upload() {
            Upload::Off => "-",
            Upload::Pending => "pending",
            Upload::Done => "done",
        };
        let protected = if e.pinned() {
            "pinned"
        } else if e.protected() {
            "pre-restore"
        } else {
            ""
        };
        println!(
            "{:<38} {:>10}  {:<25} {:<9} {:<8} {}",
            e.file_name(),
            human_bytes(e.bytes),
            e.created(cfg.tz)
                .with_timezone(&cfg.tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string(),
            checksum,
            upload,
            protected
        );
    }
    Ok(ExitStatus::Ok)
}

fn rotate_cmd(cfg: &Config, a: &RotateArgs) -> Result<ExitStatus> {
    let store = Store::existing(&cfg.backup_dir);
    // The dry run reads only; the real one holds the lock so it never races a backup.
    let lock_and_run = if a.dry_run {
        None
    } else {
        Some(job::begin(&Store::open(&cfg.backup_dir)?, "rotate")?)
    };
    let plan = rotate::plan_local(&store, &cfg.policy, cfg.tz)?;
    let applied = (!a.dry_run).then(|| rotate::apply(&store, &plan, None));
    if a.json {
        print_json(&rotate::to_json(&plan));
    } else {
        println!("{:<38} {:<7} REASONS", "NAME", "ACTION");
        for p in &plan {
            let action = if p.decision.keep {
                "keep"
            } else if a.dry_run {
                "delete?"
            } else {
                "delete"
            };
            let reasons: Vec<String> = p.decision.reasons.iter().map(|r| r.to_string()).collect();
            println!(
                "{:<38} {:<7} {}",
                p.decision.name,
                action,
                reasons.join(", ")
            );
        }
        let drops = plan.iter().filter(|p| !p.decision.keep).count();
        if a.dry_run {
            println!(
                "dry run: {} kept, {} would be deleted; nothing changed",
                plan.len() - drops,
                drops
            );
        }
    }
    if let (Some(applied), Some((_lock, run))) = (applied, lock_and_run) {
        let status = if applied.failed.is_empty() {
            "ok"
        } else {
            "partial"
        };
        let _ = store.log_activity(&crate::catalog::Activity {
            at: chrono::Utc::now(),
            run,
            event: "end".into(),
            command: "rotate".into(),
            status: Some(status.into()),
            error: applied.error_line(),
            backup: None,
            stages_ms: Default::default(),
            deleted: applied.deleted.clone(),
        });
        if let Some(line) = applied.error_line() {
            eprintln!("snapkeep: {line}");
            return Ok(ExitStatus::Failure);
        }
    }
    Ok(ExitStatus::Ok)
}

fn verify(cfg: &Config, name: Option<&str>, json: bool) -> Result<ExitStatus> {
    let store = Store::open(&cfg.backup_dir)?;
    let lock = job::lock_and_clean(&store)?;
    let entries: Vec<Entry> = match name {
        Some(n) => vec![store.find(n, cfg.tz)?],
        None => store.list(cfg.tz)?,
    };
    let cancel = Cancel::new();
    let mut results = Vec::new();
    for e in &entries {
        let v = crate::restore::verify_one(&store, &lock, e, &cancel)?;
        if !json {
            match (&v.error, v.hash_checked) {
                (None, true) => println!("ok   {}", v.name),
                (None, false) => println!("ok   {} (no record: hash not compared)", v.name),
                (Some(err), _) => println!("BAD  {}", err),
            }
        }
        results.push(v);
    }
    let bad: Vec<&str> = results
        .iter()
        .filter(|v| !v.ok)
        .map(|v| v.name.as_str())
        .collect();
    if json {
        print_json(&serde_json::json!({"ok": bad.is_empty(), "results": results}));
    } else if entries.is_empty() {
        println!("no backups to verify in {}", cfg.backup_dir.display());
    }
    if bad.is_empty() {
        Ok(ExitStatus::Ok)
    } else {
        eprintln!("snapkeep: {} bad backup(s): {}", bad.len(), bad.join(", "));
        Ok(ExitStatus::Failure)
    }
}

fn restore(
    cfg: &Config,
    name: &str,
    to: Option<&std::path::Path>,
    yes: bool,
    from_drive: bool,
) -> Result<ExitStatus> {
    if !yes {
        let target = match to {
            Some(p) => format!("write {} as a new file", p.display()),
            None => "replace the content of the live database (it is saved first as a pre-restore backup)".into(),
        };
        eprintln!("snapkeep: restore would {target}; run again with --yes to confirm");
        return Ok(ExitStatus::Usage);
    }
    if to.is_none() {
        cfg.database()?;
    }
    let store = Store::open(&cfg.backup_dir)?;
    let (lock, run) = job::begin(&store, "restore")?;
    let restored = (|| {
        let entry = if from_drive {
            crate::remote_cli::download_for_restore(cfg, &store, &lock, name)?
        } else {
            store.find(name, cfg.tz)?
        };
        let out = crate::restore::restore(cfg, &store, &lock, &entry, to, &Cancel::new());
        if from_drive {
            crate::snapshot::remove_snapshot_files(&entry.path);
        }
        out
    })();
    let (status, error) = match &restored {
        Ok(_) => ("ok", None),
        Err(e) => ("failed", Some(e.to_string())),
    };
    job::log_end(&store, &job::end(&run, "restore", status, error));
    let out = restored?;
    println!("restored {} into {}", out.restored, out.target.display());
    if let Some(saved) = out.saved_as {
        println!("the previous database was saved as {saved} (protected from rotation)");
    }
    Ok(ExitStatus::Ok)
}

fn pin(cfg: &Config, name: &str, pinned: bool) -> Result<ExitStatus> {
    let store = Store::open(&cfg.backup_dir)?;
    let _lock = job::lock_and_clean(&store)?;
    let entry = store.find(name, cfg.tz)?;
    let mut record = match entry.record.clone() {
        Some(r) => r,
        None => legacy_record(&entry, cfg)?,
    };
    record.pinned = pinned;
    store.save_record(&record)?;
    println!(
        "{} {}",
        if pinned { "pinned" } else { "unpinned" },
        entry.file_name()
    );
    Ok(ExitStatus::Ok)
}

fn status(cfg: &Config, json: bool) -> Result<ExitStatus> {
    let s = crate::status::gather(cfg, chrono::Utc::now())?;
    if json {
        print_json(&s);
    } else {
        for line in crate::status::human(&s, cfg) {
            println!("{line}");
        }
    }
    Ok(ExitStatus::Ok)
}

/// A record for a backup that has none (a legacy file): its facts as found now.
fn legacy_record(entry: &Entry, cfg: &Config) -> Result<Record> {
    let sha256 = crate::archive::sha256_file(&entry.path).map_err(|e| Error::Io {
        context: format!("cannot read {}", entry.path.display()),
        source: e,
    })?;
    Ok(Record {
        name: entry.file_name(),
        created: entry.created(cfg.tz),
        sha256,
        bytes: entry.bytes,
        source_bytes: 0,
        snapshot_bytes: entry.bytes,
        method: Method::Legacy,
        sqlite_version: String::new(),
        source: PathBuf::new(),
        pinned: false,
        upload: Upload::Off,
        drive: None,
    })
}
