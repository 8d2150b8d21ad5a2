//! Storage under redb: a file with injectable write faults (for tests of disk-full and torn
//! commits), and a read-only view of a file whose writes stay in memory (for `check`).

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// The error type of redb's storage backends.
type BackendIoError = std::io::Error;

/// Injected storage faults: once armed, every write or sync after the next `n` fails as a full
/// disk would, until disarmed.
///
/// Clones share the same plan, so a test keeps one and hands the other to
/// [`RedbBackend::open_with_faults`](crate::RedbBackend::open_with_faults).
#[derive(Debug, Clone)]
pub struct WriteFaults(Arc<AtomicU64>);

impl Default for WriteFaults {
    fn default() -> Self {
        WriteFaults(Arc::new(AtomicU64::new(u64::MAX)))
    }
}

impl WriteFaults {
    /// No faults until armed.
    pub fn new() -> WriteFaults {
        WriteFaults::default()
    }

    /// Lets `n` more writes or syncs succeed, then fails every one after them.
    pub fn fail_after(&self, n: u64) {
        self.0.store(n, Ordering::SeqCst);
    }

    /// Stops injecting faults.
    pub fn disarm(&self) {
        self.0.store(u64::MAX, Ordering::SeqCst);
    }

    /// Whether the next write or sync may go through; counts it when it may.
    fn allow(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                u64::MAX => Some(u64::MAX),
                0 => None,
                n => Some(n - 1),
            })
            .is_ok()
    }
}

fn disk_full() -> BackendIoError {
    std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        "injected fault: no space left",
    )
}

/// A file backend whose writes and syncs fail on demand.
#[derive(Debug)]
pub(crate) struct FaultyFile {
    inner: FileBackend,
    faults: WriteFaults,
}

impl FaultyFile {
    pub(crate) fn new(file: File, faults: WriteFaults) -> Result<FaultyFile, redb::DatabaseError> {
        Ok(FaultyFile {
            inner: FileBackend::new(file)?,
            faults,
        })
    }
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> Result<u64, BackendIoError> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        if !self.faults.allow() {
            return Err(disk_full());
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), BackendIoError> {
        if !self.faults.allow() {
            return Err(disk_full());
        }
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        if !self.faults.allow() {
            return Err(disk_full());
        }
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), BackendIoError> {
        self.inner.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// The block size of the in-memory overlay.
const BLOCK: u64 = 4096;

#[derive(Debug)]
struct Overlay {
    /// The storage length as redb sees it.
    len: u64,
    /// Bytes of the file that still show through: below this, unwritten blocks come from the file.
    file_visible: u64,
    /// Written blocks, by block index.
    blocks: BTreeMap<u64, Vec<u8>>,
}

/// A file opened read-only; whatever redb writes (a repair, an allocator snapshot) stays in
/// memory and never reaches the file.
#[derive(Debug)]
pub(crate) struct ReadOnlyOverlay {
    file: File,
    state: Mutex<Overlay>,
}

impl ReadOnlyOverlay {
    pub(crate) fn new(file: File) -> std::io::Result<ReadOnlyOverlay> {
        let len = file.metadata()?.len();
        Ok(ReadOnlyOverlay {
            file,
            state: Mutex::new(Overlay {
                len,
                file_visible: len,
                blocks: BTreeMap::new(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, Overlay> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the block `index` as the overlay sees it.
    fn block(&self, state: &Overlay, index: u64) -> std::io::Result<Vec<u8>> {
        if let Some(b) = state.blocks.get(&index) {
            return Ok(b.clone());
        }
        let mut out = vec![0u8; BLOCK as usize];
        let start = index * BLOCK;
        if start < state.file_visible {
            let n = (state.file_visible - start).min(BLOCK) as usize;
            read_at(&self.file, start, &mut out[..n])?;
        }
        Ok(out)
    }
}

#[cfg(unix)]
fn read_at(file: &File, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, out, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut offset: u64, mut out: &mut [u8]) -> std::io::Result<()> {
    while !out.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, out, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        offset += n as u64;
        out = &mut out[n..];
    }
    Ok(())
}

impl StorageBackend for ReadOnlyOverlay {
    fn len(&self) -> Result<u64, BackendIoError> {
        Ok(self.state().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        let state = self.state();
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|&end| end <= state.len)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        let mut pos = offset;
        while pos < end {
            let index = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let n = ((BLOCK - within as u64).min(end - pos)) as usize;
            let block = self.block(&state, index)?;
            let at = (pos - offset) as usize;
            out[at..at + n].copy_from_slice(&block[within..within + n]);
            pos += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        let mut state = self.state();
        if len < state.len {
            state.file_visible = state.file_visible.min(len);
            let first_dropped = len.div_ceil(BLOCK);
            state.blocks.retain(|&i, _| i < first_dropped);
            // The partial last block must read as zeros past `len` if it grows again.
            if !len.is_multiple_of(BLOCK)
                && let Some(b) = state.blocks.get_mut(&(len / BLOCK))
            {
                b[(len % BLOCK) as usize..].fill(0);
            }
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendIoError> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        let mut state = self.state();
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let index = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let n = ((BLOCK - within as u64).min(end - pos)) as usize;
            let mut block = self.block(&state, index)?;
            let at = (pos - offset) as usize;
            block[within..within + n].copy_from_slice(&data[at..at + n]);
            state.blocks.insert(index, block);
            pos += n as u64;
        }
        state.len = state.len.max(end);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn overlay_reads_the_file_and_keeps_writes_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let original: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        File::create(&path).unwrap().write_all(&original).unwrap();
        let o = ReadOnlyOverlay::new(File::open(&path).unwrap()).unwrap();
        let mut buf = vec![0u8; 5000];
        o.read(3000, &mut buf).unwrap();
        assert_eq!(buf, original[3000..8000]);
        o.write(4090, &[7u8; 20]).unwrap();
        o.read(4080, &mut buf[..40]).unwrap();
        assert_eq!(&buf[..10], &original[4080..4090]);
        assert_eq!(&buf[10..30], &[7u8; 20]);
        assert_eq!(&buf[30..40], &original[4110..4120]);
        o.set_len(5000).unwrap();
        o.set_len(9000).unwrap();
        o.read(4990, &mut buf[..20]).unwrap();
        assert_eq!(&buf[..10], &original[4990..5000]);
        assert_eq!(&buf[10..20], &[0u8; 10]);
        assert!(o.read(8990, &mut buf[..20]).is_err());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            original,
            "the file is untouched"
        );
    }
}
