//! Verify and restore: a backup is only as good as the restore it allows.

mod common;

use common::*;
use rusqlite::Connection;

fn backup(f: &Fixture) -> String {
    let out = f.run(&["backup", "--no-drive", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out)["backup"]["name"].as_str().unwrap().to_string()
}

#[test]
fn verify_passes_good_backups_and_names_a_single_flipped_byte() {
    let f = Fixture::new();
    make_db(&f.db(), 2_000, "wal");
    let good = backup(&f);
    let bad = backup(&f);
    let out = f.run(&["verify", "--all", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["ok"], true);

    let path = f.backups().join(&bad);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();

    let out = f.run(&["verify", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains(&format!("ok   {good}")), "{text}");
    assert!(
        text.contains(&format!("BAD  backup {bad} is bad")),
        "{text}"
    );
    assert!(stderr(&out).contains(&bad), "{}", stderr(&out));
    // Verifying only the good one passes.
    assert!(f.run(&["verify", &good]).status.success());
}

#[test]
fn verify_catches_a_flipped_byte_in_a_legacy_backup_with_a_record() {
    let f = Fixture::new();
    make_db(&f.db(), 500, "delete");
    let legacy = "backup-2025-01-02-030000.db";
    std::fs::create_dir_all(f.backups()).unwrap();
    std::fs::copy(f.db(), f.backups().join(legacy)).unwrap();
    assert!(f.run(&["verify", legacy]).status.success());
    // Pinning records its hash; a later flip is then caught by the hash.
    assert!(f.run(&["pin", legacy]).status.success());
    let path = f.backups().join(legacy);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let out = f.run(&["verify", legacy]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("SHA-256 mismatch"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn restore_to_a_new_file_reproduces_the_content() {
    let f = Fixture::new();
    make_db(&f.db(), 3_000, "wal");
    let want = dump(&f.db());
    let name = backup(&f);
    let target = f.path("copy.db");
    let out = f.run(&["restore", &name, "--to", target.to_str().unwrap(), "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dump(&target), want);
    // --to never replaces an existing file.
    let out = f.run(&[
        "restore",
        "latest",
        "--to",
        target.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"));
}

#[test]
fn restore_without_yes_refuses_and_explains() {
    let f = Fixture::new();
    make_db(&f.db(), 10, "wal");
    backup(&f);
    let before = dump(&f.db());
    let out = f.run(&["restore", "latest"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(dump(&f.db()), before);
}

#[test]
fn in_place_restore_saves_the_current_state_and_open_connections_see_the_restored_data() {
    let f = Fixture::new();
    make_db(&f.db(), 1_000, "wal");
    let name = backup(&f);
    let at_backup = dump(&f.db());

    // A "running program" keeps its connection open across the restore.
    let app = Connection::open(f.db()).unwrap();
    app.execute("DELETE FROM items WHERE id > 10", []).unwrap();
    app.execute("UPDATE meta SET n = 10", []).unwrap();
    let count: i64 = app
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 10);

    let out = f.run(&["restore", &name, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("pre-restore-"), "{}", stdout(&out));

    let count: i64 = app
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        count, 1_000,
        "the open connection must read the restored data"
    );
    drop(app);
    assert_eq!(dump(&f.db()), at_backup);
    assert_eq!(integrity(&f.db()), "ok");

    // The state before the restore is kept as a protected backup that restores too.
    let listed = f.run(&["list", "--json"]);
    let rows = json(&listed);
    let pre = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "pre-restore")
        .expect("a pre-restore backup");
    assert_eq!(pre["protected"], true);
    let pre_copy = f.path("pre.db");
    let out = f.run(&[
        "restore",
        pre["name"].as_str().unwrap(),
        "--to",
        pre_copy.to_str().unwrap(),
        "--yes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(shape(&pre_copy), (10, 1, 10, 10));
}

#[test]
fn restore_refuses_a_damaged_backup_and_leaves_the_database_alone() {
    let f = Fixture::new();
    make_db(&f.db(), 800, "wal");
    let name = backup(&f);
    let path = f.backups().join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes.len() / 3;
    bytes[i] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let before = dump(&f.db());
    let out = f.run(&["restore", &name, "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&name), "{}", stderr(&out));
    assert_eq!(dump(&f.db()), before);
    assert!(
        !f.listed().iter().any(|n| n.starts_with("pre-restore-")),
        "nothing saved, nothing restored"
    );
}

#[test]
fn legacy_plain_backups_list_verify_and_restore() {
    let f = Fixture::new();
    make_db(&f.db(), 700, "delete");
    let want = dump(&f.db());
    std::fs::create_dir_all(f.backups()).unwrap();
    let legacy = "backup-2024-06-30-030000.db";
    std::fs::copy(f.db(), f.backups().join(legacy)).unwrap();
    std::fs::write(f.backups().join("backup-2024-06-30-030000.db-journal"), b"").unwrap();
    std::fs::write(f.backups().join("notes.txt"), b"not a backup").unwrap();

    let listed = json(&f.run(&["list", "--json"]));
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["name"], legacy);
    assert_eq!(rows[0]["kind"], "legacy");

    let out = f.run(&["verify", legacy]);
    assert!(out.status.success(), "{}", stdout(&out));
    let target = f.path("from-legacy.db");
    let out = f.run(&["restore", legacy, "--to", target.to_str().unwrap(), "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dump(&target), want);
}

#[test]
fn restore_of_an_unknown_backup_names_it() {
    let f = Fixture::new();
    make_db(&f.db(), 10, "wal");
    let out = f.run(&["restore", "backup-2020-01-01-000000.db.gz", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("backup not found: backup-2020-01-01-000000.db.gz"));
}

#[test]
fn regression_restoring_over_a_corrupt_live_database_saves_it_and_restores() {
    let f = Fixture::new();
    make_db(&f.db(), 3_000, "delete");
    let want = dump(&f.db());
    let name = backup(&f);
    let mut bytes = std::fs::read(f.db()).unwrap();
    let len = bytes.len();
    for (i, b) in bytes[4096 * 3..len - 4096].iter_mut().enumerate() {
        if i % 7 == 0 {
            *b = 0xA5;
        }
    }
    std::fs::write(f.db(), bytes).unwrap();
    let out = f.run(&["restore", &name, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dump(&f.db()), want);
    assert!(
        f.listed().iter().any(|n| n.starts_with("pre-restore-")),
        "the corrupt state is kept"
    );
}
