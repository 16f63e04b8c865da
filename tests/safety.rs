//! Nothing lost, ever: bad inputs, kills, concurrent runs and full disks leave the earlier
//! backups untouched and nothing that looks like a backup.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Name -> SHA-256 of every backup file, to prove earlier backups were not touched.
fn fingerprint(f: &Fixture) -> BTreeMap<String, String> {
    f.backup_files()
        .into_iter()
        .map(|n| {
            let h = sha256_hex(&f.backups().join(&n));
            (n, h)
        })
        .collect()
}

/// Run a backup that must fail with `code` and a one-line error containing `needle`, and
/// leave the existing backups exactly as they were.
fn assert_fails_cleanly(f: &Fixture, cmd: &mut Command, code: i32, needle: &str) {
    let before = fingerprint(f);
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].contains(needle), "{needle:?} not in {err:?}");
    assert_eq!(fingerprint(f), before, "existing backups changed");
    let tmp = f.backups().join(".snapkeep/tmp");
    if tmp.exists() {
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "scratch files left behind"
        );
    }
}

fn fixture_with_one_good_backup() -> Fixture {
    let f = Fixture::new();
    make_db(&f.db(), 500, "wal");
    let out = f.run(&["backup", "--no-drive"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(f.listed().len(), 1);
    f
}

#[test]
fn a_missing_database_fails_with_one_line() {
    let f = fixture_with_one_good_backup();
    std::fs::remove_file(f.db()).unwrap();
    assert_fails_cleanly(
        &f,
        &mut f.cmd(&["backup", "--no-drive"]),
        1,
        "database not found",
    );
    assert!(
        !f.db().exists(),
        "a failed backup must not create the database"
    );
}

#[test]
fn a_directory_in_place_of_the_database_fails_with_one_line() {
    let f = fixture_with_one_good_backup();
    std::fs::remove_file(f.db()).unwrap();
    std::fs::create_dir(f.db()).unwrap();
    assert_fails_cleanly(
        &f,
        &mut f.cmd(&["backup", "--no-drive"]),
        1,
        "cannot be read",
    );
}

#[test]
fn a_file_that_is_not_sqlite_fails_with_one_line() {
    let f = fixture_with_one_good_backup();
    std::fs::write(f.db(), "name,email\nada,ada@example.com\n".repeat(100)).unwrap();
    for _ in ["-wal", "-shm"] {}
    let _ = std::fs::remove_file(f.path("app.db-wal"));
    let _ = std::fs::remove_file(f.path("app.db-shm"));
    assert_fails_cleanly(
        &f,
        &mut f.cmd(&["backup", "--no-drive"]),
        1,
        "not a SQLite database",
    );
}

#[test]
fn a_corrupt_database_fails_with_one_line_and_records_nothing() {
    let f = Fixture::new();
    make_db(&f.db(), 3_000, "delete");
    assert!(f.run(&["backup", "--no-drive"]).status.success());
    // Overwrite the middle of the file (table and index b-tree pages) with garbage.
    let mut bytes = std::fs::read(f.db()).unwrap();
    let len = bytes.len();
    for (i, b) in bytes[4096 * 3..len - 4096].iter_mut().enumerate() {
        if i % 7 == 0 {
            *b = 0xA5;
        }
    }
    std::fs::write(f.db(), bytes).unwrap();
    for extra in [&[][..], &["--no-vacuum"][..]] {
        let mut args = vec!["backup", "--no-drive"];
        args.extend_from_slice(extra);
        assert_fails_cleanly(&f, &mut f.cmd(&args), 1, "corrupt");
    }
    assert_eq!(f.listed().len(), 1);
    let records = std::fs::read_dir(f.backups().join(".snapkeep/records"))
        .unwrap()
        .count();
    assert_eq!(records, 1, "no record for a failed backup");
}

#[test]
fn bad_configuration_exits_2_and_touches_nothing() {
    let f = fixture_with_one_good_backup();
    let mut cmd = f.cmd(&["backup", "--no-drive"]);
    cmd.env("GZIP_LEVEL", "12");
    assert_fails_cleanly(&f, &mut cmd, 2, "GZIP_LEVEL");
    let mut cmd = f.cmd(&["backup", "--no-drive"]);
    cmd.env("DATABASE_URL", "postgres://db/app");
    assert_fails_cleanly(&f, &mut cmd, 2, "DATABASE_URL");
    let mut cmd = f.cmd(&["backup", "--no-drive"]);
    cmd.env_remove("DATABASE_URL");
    assert_fails_cleanly(&f, &mut cmd, 2, "DATABASE_URL is not set");
    let mut cmd = f.cmd(&["backup", "--no-drive"]);
    cmd.keep_days_only("0");
    assert_fails_cleanly(&f, &mut cmd, 2, "KEEP_");
}

#[test]
fn unknown_flags_are_a_usage_error() {
    let f = Fixture::new();
    let out = f.run(&["backup", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_run_killed_mid_way_leaves_nothing_listed_and_the_next_run_cleans_up() {
    let f = Fixture::new();
    make_big_db(&f.db(), 96);
    let mut child = f
        .cmd(&["backup", "--no-drive"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until work is in progress (a scratch file exists), then kill without warning.
    let tmp = f.backups().join(".snapkeep/tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let busy = std::fs::read_dir(&tmp)
            .map(|d| d.count() > 0)
            .unwrap_or(false);
        if busy {
            break;
        }
        assert!(Instant::now() < deadline, "no work in progress seen");
        assert!(
            child.try_wait().unwrap().is_none(),
            "backup finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        f.listed(),
        Vec::<String>::new(),
        "a killed run left something listed"
    );
    assert!(f.backup_files().is_empty(), "files: {:?}", f.backup_files());

    let out = f.run(&["backup", "--no-drive"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(f.listed().len(), 1);
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "leftovers not cleaned"
    );
}

#[test]
fn two_runs_at_once_make_exactly_one_backup_and_the_other_exits_4() {
    let f = Fixture::new();
    make_big_db(&f.db(), 48);
    let spawn = || {
        f.cmd(&["backup", "--no-drive"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = [a.status.code().unwrap(), b.status.code().unwrap()];
    codes.sort();
    assert_eq!(codes, [0, 4], "a: {} b: {}", stderr(&a), stderr(&b));
    let loser = if a.status.code() == Some(4) { &a } else { &b };
    assert!(
        stderr(loser).contains("holds the lock"),
        "{}",
        stderr(loser)
    );
    assert_eq!(f.listed().len(), 1);
}

/// Run `snapkeep backup` with BACKUP_DIR on a tmpfs of `size` bytes, in a private mount
/// namespace (unshare), so the disk really fills.
fn backup_on_small_disk(f: &Fixture, size: u64) -> std::process::Output {
    let mnt = f.path("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let setup = format!("mount -t tmpfs -o size={size} tmpfs {}", mnt.display());
    let out = f
        .cmd_in_mount_namespace(&setup, &["backup", "--no-drive"])
        .env("BACKUP_DIR", mnt.join("backups"))
        .output()
        .expect("unshare is needed for the full-disk tests (util-linux)");
    assert!(
        !stderr(&out).contains("unshare failed") && !stderr(&out).contains("mount:"),
        "could not set up a small disk: {}",
        stderr(&out)
    );
    out
}

#[test]
fn too_little_free_space_fails_before_starting() {
    let f = Fixture::new();
    make_big_db(&f.db(), 8);
    let out = backup_on_small_disk(&f, 4 << 20);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not enough free space"), "{err}");
}

#[test]
fn a_disk_that_fills_mid_way_fails_cleanly() {
    let f = Fixture::new();
    // Random blobs do not compress: the estimate (database + half) passes, the real need
    // (database + all of it) does not, so the disk fills while compressing.
    make_big_db(&f.db(), 8);
    let db_bytes = std::fs::metadata(f.db()).unwrap().len();
    let out = backup_on_small_disk(&f, db_bytes * 16 / 10 + (1 << 20));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("disk full"), "{err}");
}
