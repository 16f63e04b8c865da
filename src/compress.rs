//! PLACEHOLDER until the parallel compressor lands: single-threaded gzip + SHA-256.
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressOptions {
    pub level: u32,
    pub threads: usize,
    pub block_size: usize,
}
impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            level: 6,
            threads: 1,
            block_size: 1 << 20,
        }
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressStats {
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub sha256_hex: String,
    pub crc32: u32,
}
struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    n: u64,
}
impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hash.update(&b[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
pub fn gzip_stream(
    mut input: impl Read,
    output: impl Write,
    opts: &CompressOptions,
    mut progress: Option<&mut dyn FnMut(u64)>,
) -> io::Result<CompressStats> {
    let hw = HashWriter {
        inner: output,
        hash: Sha256::new(),
        n: 0,
    };
    let mut enc = flate2::write::GzEncoder::new(hw, flate2::Compression::new(opts.level));
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
        enc.write_all(&buf[..n])?;
        total += n as u64;
        if let Some(p) = progress.as_mut() {
            p(total);
        }
    }
    let mut hw = enc.finish()?;
    hw.flush()?;
    Ok(CompressStats {
        input_bytes: total,
        output_bytes: hw.n,
        sha256_hex: hex::encode(hw.hash.finalize()),
        crc32: crc.finalize(),
    })
}
