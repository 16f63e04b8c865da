//! The core path end to end: the real binary, real SQLite files, real gzip.

mod common;

use common::*;
use std::path::Path;

/// Back up while a second process writes; the backup must be a consistent prefix of the
/// writer's work and match its record.
fn round_trip_under_writer(journal_mode: &str, extra: &[&str]) {
    let f = Fixture::new();
    make_db(&f.db(), 5_000, journal_mode);
    let writer = Writer::start(&f.db(), journal_mode);
    let mut args = vec!["backup", "--no-drive", "--json"];
    args.extend_from_slice(extra);
    let out = f.run(&args);
    let last = writer.stop();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["status"], "ok");
    let path = Path::new(report["backup"]["path"].as_str().unwrap()).to_path_buf();
    assert_eq!(
        report["backup"]["sha256"].as_str().unwrap(),
        sha256_hex(&path)
    );
    let method = if extra.contains(&"--no-vacuum") {
        "backup-api"
    } else {
        "vacuum"
    };
    assert_eq!(report["backup"]["method"], method);

    // The record beside it says the same.
    let name = report["backup"]["name"].as_str().unwrap();
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            f.backups()
                .join(".snapkeep/records")
                .join(format!("{name}.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(record["sha256"], report["backup"]["sha256"]);
    assert_eq!(record["method"], method);

    let restored = f.path("restored.db");
    gunzip_to(&path, &restored);
    assert_eq!(integrity(&restored), "ok");
    let (count, min, max, n) = shape(&restored);
    assert_eq!(min, 1);
    assert_eq!(count, max, "ids must have no gap");
    assert_eq!(n, max, "meta.n must match the rows: one committed state");
    assert!(
        n >= 5_000 && n <= last,
        "snapshot {n} outside 5000..={last}"
    );
}

#[test]
fn round_trip_wal_vacuum_under_a_writer() {
    round_trip_under_writer("wal", &[]);
}

#[test]
fn round_trip_rollback_journal_vacuum_under_a_writer() {
    round_trip_under_writer("delete", &[]);
}

#[test]
fn round_trip_wal_backup_api_under_a_writer() {
    round_trip_under_writer("wal", &["--no-vacuum"]);
}

#[test]
fn round_trip_rollback_journal_backup_api_under_a_writer() {
    round_trip_under_writer("delete", &["--no-vacuum"]);
}

#[test]
fn the_stored_file_is_standard_gzip_with_mode_0600_in_a_0700_dir() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    make_db(&f.db(), 2_000, "wal");
    let out = f.run(&["backup", "--no-drive", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = json(&out)["backup"]["path"].as_str().unwrap().to_string();
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(f.backups().to_str().unwrap()), 0o700);
    if let Ok(gz) = std::process::Command::new("gzip")
        .args(["-t", &path])
        .status()
    {
        assert!(gz.success(), "gzip -t rejects {path}");
    }
}

#[test]
fn backups_in_the_same_second_never_overwrite_each_other() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "delete");
    let mut names = Vec::new();
    for _ in 0..3 {
        // KEEP_LAST so that rotation (one per day) does not thin the three out.
        let out = f
            .cmd(&["backup", "--no-drive", "--json"])
            .env("KEEP_LAST", "5")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        names.push(json(&out)["backup"]["name"].as_str().unwrap().to_string());
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "{names:?}");
    let listed = f.cmd(&["list", "--json"]).output().unwrap();
    assert_eq!(json(&listed).as_array().unwrap().len(), 3);
}

#[test]
fn manual_backup_is_backup_under_its_old_name() {
    let f = Fixture::new();
    make_db(&f.db(), 300, "wal");
    let out = f
        .cmd_bin(MANUAL_BACKUP, &["--no-drive", "--no-vacuum", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["backup"]["method"], "backup-api");
    assert_eq!(f.listed().len(), 1);
}

#[test]
fn json_output_has_exactly_the_spec_fields() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let out = f.run(&["backup", "--no-drive", "--json"]);
    let v = json(&out);
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        [
            "backup",
            "drive",
            "duration_ms",
            "error",
            "rotation",
            "status"
        ]
    );
    assert_eq!(
        keys(&v["backup"]),
        ["bytes", "method", "name", "path", "sha256", "source_bytes"]
    );
    assert_eq!(keys(&v["rotation"]), ["deleted", "remote_deleted"]);
    assert!(v["drive"].is_null() && v["error"].is_null());
    assert!(v["duration_ms"].is_u64());
}

#[test]
fn human_output_says_drive_is_off_when_not_configured() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let out = f.run(&["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Drive is off"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains("Drive")).count(),
        1,
        "{text}"
    );
}

#[test]
fn the_activity_log_records_start_end_stages_and_outcome() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    assert!(f.run(&["backup", "--no-drive"]).status.success());
    std::fs::remove_file(f.db()).unwrap();
    assert_eq!(f.run(&["backup", "--no-drive"]).status.code(), Some(1));
    let log = std::fs::read_to_string(f.backups().join(".snapkeep/activity.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{log}");
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines[1]["event"], "end");
    assert_eq!(lines[1]["status"], "ok");
    for stage in ["snapshot", "compress", "store"] {
        assert!(
            lines[1]["stages_ms"][stage].is_u64(),
            "{stage} in {}",
            lines[1]
        );
    }
    assert_eq!(lines[3]["status"], "failed");
    assert!(lines[3]["error"]
        .as_str()
        .unwrap()
        .contains("database not found"));
}

#[test]
fn config_prints_the_effective_values_with_secrets_redacted() {
    let f = Fixture::new();
    let out = f
        .cmd(&["config"])
        .env("NTFY_TOPIC", "alerts")
        .env("NTFY_TOKEN", "tk_very_secret_token")
        .env("KEEP_DAILY", "5")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("KEEP_DAILY=5  (environment)"), "{text}");
    assert!(text.contains("KEEP_WEEKLY=4  (default)"), "{text}");
    assert!(text.contains("NTFY_TOKEN=<redacted>"), "{text}");
    assert!(!text.contains("tk_very_secret_token"));
}

#[test]
fn dotenv_is_read_and_the_real_environment_wins() {
    let f = Fixture::new();
    std::fs::write(f.path(".env"), "KEEP_DAILY=3\nKEEP_WEEKLY=2\n").unwrap();
    let out = f.cmd(&["config"]).env("KEEP_WEEKLY", "9").output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("KEEP_DAILY=3  (.env)"), "{text}");
    assert!(text.contains("KEEP_WEEKLY=9  (environment)"), "{text}");
}
