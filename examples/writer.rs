//! Test helper, run as a separate process by the integration tests: keeps writing to a SQLite
//! database until a stop file appears, so a backup can be taken under a real concurrent writer.
//!
//! Each transaction inserts row k into `items` and sets `meta.n = k`, so any consistent
//! snapshot has exactly the rows 1..=n with no gap. Usage: `writer DB wal|delete STOPFILE`.

use std::path::Path;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (db, mode, stop) = (&args[1], &args[2], Path::new(&args[3]));
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.busy_timeout(Duration::from_secs(30))
        .expect("busy timeout");
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| r.get(0))
        .expect("journal mode");
    eprintln!("writer: journal_mode={mode}");
    let mut k: i64 = conn
        .query_row("SELECT n FROM meta", [], |r| r.get(0))
        .expect("meta row");
    let ready = stop.with_extension("ready");
    while !stop.exists() {
        k += 1;
        let tx = conn.unchecked_transaction().expect("begin");
        tx.execute(
            "INSERT INTO items(id, payload) VALUES (?1, printf('%.*c', 200 + ?1 % 300, 'w'))",
            [k],
        )
        .expect("insert");
        tx.execute("UPDATE meta SET n = ?1", [k]).expect("update");
        tx.commit().expect("commit");
        if k % 50 == 0 {
            let _ = std::fs::write(&ready, k.to_string());
        }
    }
    println!("{k}");
}
