//! Turning a checked snapshot into a stored backup, and a stored backup back into a database
//! file. Both directions hash the stored bytes in the same pass as the (de)compression.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cancel::{self, Cancel, CancellableReader};
use crate::catalog::{Entry, Store};
use crate::compress::{self, CompressOptions};
use crate::error::{is_disk_full, Error, Result};
use crate::fsutil;
use crate::names::BackupName;

/// A compressed snapshot, complete and fsynced, still under its scratch name.
#[derive(Debug)]
pub struct Compressed {
    pub partial: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// Map an io error of a streaming stage to the error the user sees.
fn stream_error(e: io::Error, what: &str) -> Error {
    if cancel::is_cancelled_error(&e) {
        Error::Aborted
    } else if is_disk_full(&e) {
        Error::DiskFull(what.to_string())
    } else {
        Error::Io {
            context: what.to_string(),
            source: e,
        }
    }
}

/// gzip + SHA-256 `snapshot` into `partial` in one pass, then fsync it. On error the partial
/// file is removed.
pub fn compress_snapshot(
    snapshot: &Path,
    partial: &Path,
    level: u32,
    cancel: &Cancel,
    progress: Option<&mut dyn FnMut(u64)>,
) -> Result<Compressed> {
    let what = format!("writing {}", partial.display());
    let result = (|| {
        let input = File::open(snapshot).map_err(|e| stream_error(e, "reading the snapshot"))?;
        let out = fsutil::create_private(partial).map_err(|e| stream_error(e, &what))?;
        let mut writer = BufWriter::with_capacity(1 << 20, out);
        let opts = CompressOptions {
            level,
            ..CompressOptions::default()
        };
        let stats = compress::gzip_stream(
            CancellableReader::new(input, cancel.clone()),
            &mut writer,
            &opts,
            progress,
        )
        .map_err(|e| stream_error(e, &what))?;
        let file = writer
            .into_inner()
            .map_err(|e| stream_error(e.into_error(), &what))?;
        file.sync_all().map_err(|e| stream_error(e, &what))?;
        Ok(Compressed {
            partial: partial.to_path_buf(),
            bytes: stats.output_bytes,
            sha256: stats.sha256_hex,
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(partial);
    }
    result
}

/// The first free name at or after `name`: a second backup in the same second takes the next
/// second's name rather than overwriting the first.
pub fn free_name(store: &Store, mut name: BackupName) -> BackupName {
    while store.dir.join(name.file_name()).exists() {
        name = name.next_second();
    }
    name
}

/// Put a complete file into the backup directory under `name`, never replacing anything:
/// a hard link fails if the name exists. Then fsync the directory and drop the scratch name.
pub fn install(store: &Store, partial: &Path, name: &BackupName) -> Result<PathBuf> {
    let dest = store.dir.join(name.file_name());
    fs::hard_link(partial, &dest).map_err(|e| Error::Io {
        context: format!("cannot put {} in place", dest.display()),
        source: e,
    })?;
    let _ = fs::remove_file(partial);
    fsutil::sync_dir(&store.dir).map_err(|e| Error::Io {
        context: "cannot sync the backup directory".into(),
        source: e,
    })?;
    Ok(dest)
}

/// Reads through to `inner` while hashing every byte.
pub struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: Sha256::new(),
        }
    }
    /// Read what is left (a gzip trailer may leave bytes unread) and return the hex digest.
    pub fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(hex::encode(self.hash.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// SHA-256 of a whole file, hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    HashingReader::new(BufReader::new(File::open(path)?)).finish()
}

/// Write the database inside a stored backup to `dest` (a new file) and return the SHA-256 of
/// the stored file, computed in the same pass. Legacy backups are plain SQLite files and are
/// copied; `.db.gz` backups are decompressed (all gzip members, as `gunzip` does).
pub fn extract(entry: &Entry, dest: &Path, cancel: &Cancel) -> Result<String> {
    let what = format!("extracting {}", entry.file_name());
    let result = (|| {
        let file = File::open(&entry.path).map_err(|e| stream_error(e, &what))?;
        let mut hashing = HashingReader::new(BufReader::with_capacity(1 << 20, file));
        let out = fsutil::create_private(dest).map_err(|e| stream_error(e, &what))?;
        let mut writer = BufWriter::with_capacity(1 << 20, out);
        if entry.name.is_gzip() {
            let mut decoder = CancellableReader::new(
                flate2::read::MultiGzDecoder::new(&mut hashing),
                cancel.clone(),
            );
            io::copy(&mut decoder, &mut writer).map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidInput
                    || e.kind() == io::ErrorKind::InvalidData
                    || e.kind() == io::ErrorKind::UnexpectedEof
                {
                    Error::BadBackup {
                        name: entry.file_name(),
                        detail: format!("it does not decompress: {e}"),
                    }
                } else {
                    stream_error(e, &what)
                }
            })?;
        } else {
            io::copy(
                &mut CancellableReader::new(&mut hashing, cancel.clone()),
                &mut writer,
            )
            .map_err(|e| stream_error(e, &what))?;
        }
        let file = writer
            .into_inner()
            .map_err(|e| stream_error(e.into_error(), &what))?;
        file.sync_all().map_err(|e| stream_error(e, &what))?;
        hashing.finish().map_err(|e| stream_error(e, &what))
    })();
    if result.is_err() {
        let _ = fs::remove_file(dest);
    }
    result
}
