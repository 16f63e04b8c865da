//! Rotation on real backup directories: dry run, the real thing, pins, and its place in `backup`.

mod common;

use common::*;

/// A real backup copied under past names (no records: their time comes from the name, as for
/// backups whose records were lost). Returns the names, oldest first.
fn dated_backups(f: &Fixture, stamps: &[&str]) -> Vec<String> {
    make_db(&f.db(), 50, "wal");
    let out = f.cmd(&["backup", "--no-drive", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let made = json(&out)["backup"]["path"].as_str().unwrap().to_string();
    let mut names = Vec::new();
    for s in stamps {
        let name = format!("backup-{s}.db.gz");
        std::fs::copy(&made, f.backups().join(&name)).unwrap();
        names.push(name);
    }
    // Remove the backup made today (and its record) so only the dated history remains.
    std::fs::remove_file(&made).unwrap();
    let rec = f.backups().join(".snapkeep/records").join(format!(
        "{}.json",
        std::path::Path::new(&made)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    ));
    std::fs::remove_file(rec).unwrap();
    names
}

fn names(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dry_run_changes_nothing_and_rotate_removes_exactly_what_it_named() {
    let f = Fixture::new();
    // Ten days in January 2026, two backups on the 10th.
    let stamps: Vec<String> = (1..=10)
        .map(|d| format!("2026-01-{d:02}-030000"))
        .chain(["2026-01-10-150000".to_string()])
        .collect();
    let refs: Vec<&str> = stamps.iter().map(String::as_str).collect();
    dated_backups(&f, &refs);
    let before = f.backup_files();

    let policy = [
        ("KEEP_DAILY", "3"),
        ("KEEP_WEEKLY", "0"),
        ("KEEP_MONTHLY", "2"),
    ];
    let run = |args: &[&str]| {
        let mut c = f.cmd(args);
        for (k, v) in policy {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = run(&["rotate", "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = json(&out);
    assert_eq!(f.backup_files(), before, "dry run changed the directory");

    // Worked out by hand: daily keeps the newest of Jan 10, 9, 8; monthly keeps Jan 10 and,
    // with one count left at the end of the walk, the oldest (Jan 1).
    assert_eq!(
        names(&plan, "keep"),
        [
            "backup-2026-01-10-150000.db.gz",
            "backup-2026-01-09-030000.db.gz",
            "backup-2026-01-08-030000.db.gz",
            "backup-2026-01-01-030000.db.gz",
        ]
    );
    assert_eq!(
        plan["keep"][0]["reasons"],
        serde_json::json!(["daily", "monthly"])
    );
    assert_eq!(plan["keep"][3]["reasons"], serde_json::json!(["oldest"]));
    let doomed = names(&plan, "delete");
    assert_eq!(doomed.len(), 7);
    assert_eq!(doomed[0], "backup-2026-01-10-030000.db.gz", "newest first");

    let out = run(&["rotate", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut expected: Vec<String> = before.into_iter().filter(|n| !doomed.contains(n)).collect();
    expected.sort();
    assert_eq!(f.backup_files(), expected);
    let log = std::fs::read_to_string(f.backups().join(".snapkeep/activity.jsonl")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("\"command\":\"rotate\"")
            && l.contains("backup-2026-01-05-030000.db.gz")),
        "{log}"
    );
}

#[test]
fn rotate_flags_win_over_the_environment_and_the_human_table_reads_at_a_glance() {
    let f = Fixture::new();
    dated_backups(
        &f,
        &[
            "2026-03-01-030000",
            "2026-03-02-030000",
            "2026-03-03-030000",
        ],
    );
    let out = f
        .cmd(&[
            "rotate",
            "--dry-run",
            "--keep-daily",
            "1",
            "--keep-weekly",
            "0",
            "--keep-monthly",
            "0",
        ])
        .env("KEEP_DAILY", "7")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("backup-2026-03-03-030000.db.gz")
                && l.contains("keep")
                && l.contains("daily")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("backup-2026-03-01-030000.db.gz") && l.contains("delete")),
        "{text}"
    );
    assert!(text.contains("nothing changed"), "{text}");
}

#[test]
fn pinned_and_pre_restore_backups_survive_rotation_and_are_not_counted() {
    let f = Fixture::new();
    dated_backups(
        &f,
        &[
            "2026-02-01-030000",
            "2026-02-02-030000",
            "2026-02-03-030000",
            "2026-02-04-030000",
        ],
    );
    std::fs::copy(
        f.backups().join("backup-2026-02-01-030000.db.gz"),
        f.backups().join("pre-restore-2026-02-02-120000.db.gz"),
    )
    .unwrap();
    let pin = f.run(&["pin", "backup-2026-02-02-030000.db.gz"]);
    assert!(pin.status.success(), "{}", stderr(&pin));
    let listed = json(&f.run(&["list", "--json"]));
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "backup-2026-02-02-030000.db.gz")
        .unwrap();
    assert_eq!(row["pinned"], true);
    assert!(stdout(&f.run(&["list"])).contains("pinned"));

    let out = f
        .cmd(&["rotate", "--json"])
        .keep_days_only("1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = json(&out);
    assert_eq!(
        names(&plan, "delete"),
        [
            "backup-2026-02-03-030000.db.gz",
            "backup-2026-02-01-030000.db.gz"
        ]
    );
    let mut left = f.backup_files();
    left.sort();
    assert_eq!(
        left,
        [
            "backup-2026-02-02-030000.db.gz",
            "backup-2026-02-04-030000.db.gz",
            "pre-restore-2026-02-02-120000.db.gz"
        ]
    );
    let reasons: Vec<&serde_json::Value> = plan["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["reasons"])
        .collect();
    assert!(reasons.contains(&&serde_json::json!(["protected"])));

    // Unpinned, it is fair game again.
    assert!(f
        .run(&["unpin", "backup-2026-02-02-030000.db.gz"])
        .status
        .success());
    let out = f
        .cmd(&["rotate", "--dry-run", "--json"])
        .keep_days_only("1")
        .output()
        .unwrap();
    assert_eq!(
        names(&json(&out), "delete"),
        ["backup-2026-02-02-030000.db.gz"]
    );
}

#[test]
fn backup_rotates_after_success_including_legacy_files() {
    let f = Fixture::new();
    dated_backups(&f, &["2025-01-01-030000"]);
    std::fs::copy(f.db(), f.backups().join("backup-2024-12-01-030000.db")).unwrap();
    let out = f
        .cmd(&["backup", "--no-drive", "--json"])
        .keep_days_only("1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let mut deleted: Vec<String> = v["rotation"]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "backup-2024-12-01-030000.db",
            "backup-2025-01-01-030000.db.gz"
        ]
    );
    assert_eq!(f.listed(), [v["backup"]["name"].as_str().unwrap()]);
}

#[test]
fn a_failed_backup_never_rotates() {
    let f = Fixture::new();
    dated_backups(
        &f,
        &[
            "2025-01-01-030000",
            "2025-01-02-030000",
            "2025-01-03-030000",
        ],
    );
    let before = f.backup_files();
    std::fs::remove_file(f.db()).unwrap();
    let out = f
        .cmd(&["backup", "--no-drive"])
        .keep_days_only("1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(f.backup_files(), before);
}

#[test]
fn a_backup_that_cannot_be_deleted_gives_exit_3_names_it_and_keeps_the_new_backup() {
    let f = Fixture::new();
    dated_backups(&f, &["2025-01-01-030000", "2025-01-02-030000"]);
    let stuck = f.backups().join("backup-2025-01-01-030000.db.gz");
    let other = f.path("bind-source.gz");
    std::fs::copy(&stuck, &other).unwrap();
    // A bind mount over the file makes unlink fail (EBUSY), a real failure of the delete.
    let setup = format!("mount --bind {} {}", other.display(), stuck.display());
    let out = f
        .cmd_in_mount_namespace(&setup, &["backup", "--no-drive", "--json"])
        .keep_days_only("1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["status"], "partial");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("backup-2025-01-01-030000.db.gz"),
        "{v}"
    );
    assert_eq!(
        v["rotation"]["deleted"],
        serde_json::json!(["backup-2025-01-02-030000.db.gz"])
    );
    let new = v["backup"]["path"].as_str().unwrap();
    assert!(std::path::Path::new(new).exists());
    assert!(stderr(&out).contains("backup-2025-01-01-030000.db.gz"));
}

#[test]
fn regression_rotation_never_deletes_the_backup_the_run_just_made() {
    let f = Fixture::new();
    // A legacy backup named later today than now (a zone ahead of BACKUP_TZ, or a clock set
    // back) makes the new backup look older than it is.
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    let legacy = format!("backup-{}.db", later.format("%Y-%m-%d-%H%M%S"));
    make_db(&f.db(), 50, "wal");
    std::fs::create_dir_all(f.backups()).unwrap();
    std::fs::copy(f.db(), f.backups().join(&legacy)).unwrap();
    let out = f
        .cmd(&["backup", "--no-drive", "--json"])
        .keep_days_only("1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let path = json(&out)["backup"]["path"].as_str().unwrap().to_string();
    assert!(
        std::path::Path::new(&path).exists(),
        "the new backup was deleted by its own run"
    );
}
