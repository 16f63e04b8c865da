//! Benchmark helper: a realistic SQLite database of about SIZE MiB, deterministic from SEED.
//! Mixed text, numbers and blobs, three indexes, and some free pages (deleted rows), like a
//! production database that has lived a while. Usage: `gen_db PATH SIZE_MIB [SEED]`.

use rusqlite::{params, Connection};

/// xorshift64*: deterministic and fast; no dependency needed for benchmark data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "order",
    "shipped",
    "customer",
    "invoice",
    "paid",
    "refund",
    "pending",
    "express",
    "gift",
    "warehouse",
    "berlin",
    "lisbon",
    "tokyo",
    "note",
    "call",
    "back",
    "address",
    "changed",
    "priority",
    "standard",
    "fragile",
    "returned",
    "the",
    "and",
    "with",
    "for",
    "from",
];

fn sentence(rng: &mut Rng, words: u64) -> String {
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let target: u64 = args[2].parse::<u64>().expect("size in MiB") << 20;
    let seed: u64 = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(42);
    let _ = std::fs::remove_file(path);
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
         CREATE TABLE events(id INTEGER PRIMARY KEY, at INTEGER NOT NULL, kind TEXT NOT NULL,
                             amount REAL, customer INTEGER, body TEXT, attachment BLOB);
         CREATE INDEX events_at ON events(at);
         CREATE INDEX events_customer ON events(customer, kind);
         CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT, email TEXT UNIQUE, notes TEXT);",
    )
    .unwrap();
    let mut rng = Rng(seed | 1);
    let mut id: i64 = 0;
    loop {
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut ins = tx
                .prepare("INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .unwrap();
            for _ in 0..5_000 {
                id += 1;
                let blob_len = if rng.below(10) == 0 {
                    512 + rng.below(4096) as usize
                } else {
                    0
                };
                // Blobs: half random (photos, already compressed), half repetitive (documents).
                let blob: Option<Vec<u8>> = (blob_len > 0).then(|| {
                    if rng.below(2) == 0 {
                        (0..blob_len).map(|_| rng.next() as u8).collect()
                    } else {
                        sentence(&mut rng, blob_len as u64 / 6).into_bytes()
                    }
                });
                let words = 5 + rng.below(40);
                ins.execute(params![
                    id,
                    1_700_000_000 + id * 7 + rng.below(5) as i64,
                    WORDS[rng.below(8) as usize],
                    rng.below(1_000_000) as f64 / 100.0,
                    rng.below(50_000) as i64,
                    sentence(&mut rng, words),
                    blob
                ])
                .unwrap();
            }
            if id % 50_000 == 0 {
                let mut c = tx
                    .prepare("INSERT OR IGNORE INTO customers VALUES (?1, ?2, ?3, ?4)")
                    .unwrap();
                for k in 0..2_000 {
                    let cid = id / 50_000 * 2_000 + k;
                    c.execute(params![
                        cid,
                        sentence(&mut rng, 2),
                        format!("c{cid}@example.com"),
                        sentence(&mut rng, 12)
                    ])
                    .unwrap();
                }
            }
        }
        tx.commit().unwrap();
        let size = std::fs::metadata(path).unwrap().len()
            + std::fs::metadata(format!("{path}-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
        if size >= target {
            break;
        }
    }
    // Free pages: delete ~5% of rows scattered through the table.
    conn.execute("DELETE FROM events WHERE id % 20 = 7", [])
        .unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;")
        .unwrap();
    let free: i64 = conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    println!(
        "{path}: {} bytes, {id} rows, {free} free pages",
        std::fs::metadata(path).unwrap().len()
    );
}
