//! A sorted, immutable run of key fingerprints on local disk: where the
//! dedup index puts committed keys once its memory bound is reached.
//!
//! Only a Bloom filter (10 bits per key, about 1 % false positives) and a
//! sparse index (one fingerprint per block of [`BLOCK`] entries) stay in
//! memory, about 1.3 bytes per key against some 40 in the in-memory map. A
//! new key, the common case, is answered by the filter alone; a key the
//! filter may hold costs one read of one block, from the page cache when
//! the run is warm. A run is deleted whole once its newest key expired.
//!
//! File layout, little-endian: a 48-byte header (magic, entry count, filter
//! words, oldest and newest expiry, block size), the entries sorted by
//! fingerprint (`fp.0`, `fp.1`, expiry: 24 bytes each), the filter words,
//! then the first fingerprint of each block. The filter and the sparse
//! index are stored so that opening a run reads neither its entries nor
//! the table: restart cost does not grow with the number of keys.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Fp;

const MAGIC: &[u8; 8] = b"TRBDDUP1";
const HEADER: u64 = 48;
const ENTRY: u64 = 24;
/// Entries per block of the sparse index: one 6 KiB read per lookup.
const BLOCK: usize = 256;
const BLOOM_BITS_PER_KEY: u64 = 10;
const BLOOM_HASHES: u64 = 7;

/// One run: its file, and what of it stays in memory.
#[derive(Debug)]
pub(super) struct Run {
    path: PathBuf,
    file: File,
    count: u64,
    /// The newest expiry of its keys: the run is deleted once it passed.
    pub(super) max_expiry: i64,
    bloom: Vec<u64>,
    sparse: Vec<Fp>,
}

impl Run {
    /// Writes `entries` (sorted by fingerprint) to a new file at `path`,
    /// durably, and opens it.
    pub(super) fn write(path: &Path, entries: &[(Fp, i64)]) -> std::io::Result<Self> {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        let count = entries.len() as u64;
        let mut bloom = vec![0u64; bloom_words(count)];
        for (fp, _) in entries {
            bloom_set(&mut bloom, *fp);
        }
        let sparse: Vec<Fp> = entries.iter().step_by(BLOCK).map(|(fp, _)| *fp).collect();
        let min_expiry = entries.iter().map(|e| e.1).min().unwrap_or(0);
        let max_expiry = entries.iter().map(|e| e.1).max().unwrap_or(0);
        let tmp = path.with_extension("tmp");
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        w.write_all(MAGIC)?;
        for v in [count, bloom.len() as u64, min_expiry as u64, max_expiry as u64, BLOCK as u64] {
            w.write_all(&v.to_le_bytes())?;
        }
        for (fp, expiry) in entries {
            w.write_all(&fp.0.to_le_bytes())?;
            w.write_all(&fp.1.to_le_bytes())?;
            w.write_all(&expiry.to_le_bytes())?;
        }
        for word in &bloom {
            w.write_all(&word.to_le_bytes())?;
        }
        for fp in &sparse {
            w.write_all(&fp.0.to_le_bytes())?;
            w.write_all(&fp.1.to_le_bytes())?;
        }
        let file = w.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(Self { path: path.to_owned(), file: File::open(path)?, count, max_expiry, bloom, sparse })
    }

    /// Opens a run written by [`Run::write`], reading its filter and
    /// sparse index but not its entries.
    pub(super) fn open(path: &Path) -> std::io::Result<Self> {
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let mut file = File::open(path)?;
        let mut header = [0u8; HEADER as usize];
        file.read_exact(&mut header)?;
        if &header[..8] != MAGIC {
            return Err(invalid("not a dedup run"));
        }
        let word = |i: usize| u64::from_le_bytes(header[8 + 8 * i..16 + 8 * i].try_into().unwrap_or_default());
        let (count, words, max_expiry, block) = (word(0), word(1), word(3) as i64, word(4));
        if block != BLOCK as u64 || words != bloom_words(count) as u64 {
            return Err(invalid("dedup run written with other parameters"));
        }
        let blocks = count.div_ceil(BLOCK as u64);
        let tail_at = HEADER + count * ENTRY;
        let mut tail = vec![0u8; (words * 8 + blocks * 16) as usize];
        file.read_exact_at(&mut tail, tail_at)?;
        if file.metadata()?.len() != tail_at + tail.len() as u64 {
            return Err(invalid("dedup run has the wrong length"));
        }
        let (bloom_bytes, sparse_bytes) = tail.split_at(words as usize * 8);
        let bloom = bloom_bytes.chunks_exact(8).map(le_u64).collect();
        let sparse = sparse_bytes.chunks_exact(16).map(|c| Fp(le_u64(&c[..8]), le_u64(&c[8..]))).collect();
        Ok(Self { path: path.to_owned(), file, count, max_expiry, bloom, sparse })
    }

    /// The expiry stored for `fp`, if the run holds it.
    pub(super) fn get(&self, fp: Fp) -> std::io::Result<Option<i64>> {
        if !bloom_has(&self.bloom, fp) {
            return Ok(None);
        }
        let block = self.sparse.partition_point(|first| *first <= fp);
        let Some(block) = block.checked_sub(1) else { return Ok(None) };
        let start = (block * BLOCK) as u64;
        let n = (self.count - start).min(BLOCK as u64);
        let mut bytes = vec![0u8; (n * ENTRY) as usize];
        self.file.read_exact_at(&mut bytes, HEADER + start * ENTRY)?;
        let entries: Vec<&[u8]> = bytes.chunks_exact(ENTRY as usize).collect();
        let at = entries.partition_point(|e| Fp(le_u64(&e[..8]), le_u64(&e[8..16])) < fp);
        Ok(entries.get(at).filter(|e| Fp(le_u64(&e[..8]), le_u64(&e[8..16])) == fp).map(|e| le_u64(&e[16..]) as i64))
    }

    /// Keys it holds.
    pub(super) fn len(&self) -> u64 {
        self.count
    }

    /// The file's name within its directory.
    pub(super) fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// Memory it keeps: the filter and the sparse index.
    pub(super) fn memory_bytes(count: u64) -> usize {
        bloom_words(count) * 8 + count.div_ceil(BLOCK as u64) as usize * 16
    }

    /// Bytes of its file.
    pub(super) fn disk_bytes(&self) -> u64 {
        HEADER + self.count * ENTRY + Self::memory_bytes(self.count) as u64
    }

    /// Deletes its file.
    pub(super) fn delete(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not delete an expired dedup run");
        }
    }
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().unwrap_or_default())
}

/// Words of a filter block: one 64-byte cache line.
const BLOOM_BLOCK_WORDS: usize = 8;

fn bloom_words(count: u64) -> usize {
    let blocks = (count * BLOOM_BITS_PER_KEY).div_ceil(64 * BLOOM_BLOCK_WORDS as u64).max(1);
    blocks as usize * BLOOM_BLOCK_WORDS
}

/// The filter's bit positions for `fp`, all in one cache line (a blocked
/// filter: one memory access per run and lookup): the block from the
/// fingerprint's first word, the bits from 9-bit slices of its second.
fn bloom_bits(words: usize, fp: Fp) -> impl Iterator<Item = usize> {
    let blocks = (words / BLOOM_BLOCK_WORDS) as u64;
    let base = (fp.0 % blocks) as usize * BLOOM_BLOCK_WORDS * 64;
    (0..BLOOM_HASHES).map(move |i| base + ((fp.1 >> (i * 9)) & 511) as usize)
}

fn bloom_set(bloom: &mut [u64], fp: Fp) {
    for bit in bloom_bits(bloom.len(), fp) {
        bloom[bit / 64] |= 1 << (bit % 64);
    }
}

fn bloom_has(bloom: &[u64], fp: Fp) -> bool {
    bloom_bits(bloom.len(), fp).all(|bit| bloom[bit / 64] & (1 << (bit % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fps(n: u64) -> Vec<(Fp, i64)> {
        let mut v: Vec<(Fp, i64)> = (0..n).map(|i| (super::super::fingerprint(&i.to_le_bytes()), i as i64)).collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }

    #[test]
    fn a_run_finds_each_of_its_keys_and_few_others_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let entries = fps(10_000);
        let path = dir.path().join("r.run");
        Run::write(&path, &entries).unwrap();
        let run = Run::open(&path).unwrap();
        assert_eq!(run.len(), 10_000);
        assert_eq!(run.max_expiry, 9_999);
        for (fp, expiry) in &entries {
            assert_eq!(run.get(*fp).unwrap(), Some(*expiry));
        }
        let strangers =
            (10_000u64..20_000).filter(|i| !bloom_has(&run.bloom, super::super::fingerprint(&i.to_le_bytes())));
        assert!(strangers.count() > 9_800, "the filter answers most absent keys alone");
        for i in 10_000u64..11_000 {
            assert_eq!(run.get(super::super::fingerprint(&i.to_le_bytes())).unwrap(), None);
        }
    }

    #[test]
    fn a_damaged_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.run");
        Run::write(&path, &fps(1_000)).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(1_000).unwrap();
        assert!(Run::open(&path).is_err());
        std::fs::write(&path, b"something else entirely, long enough for a header......").unwrap();
        assert!(Run::open(&path).is_err());
    }
}
