//! Bodies of large journal entries, kept beside sled in one append-only file
//! per run (`<journal>/bodies/<run id>`).
//!
//! sled 0.34 keeps every value it was given in memory for as long as the
//! process lives: its cache evicts a page only after 64 accesses queued on the
//! page's shard (one of 256), and never the only page of a shard. A run's
//! entry tree has a few dozen pages, so a 1M-document run held its whole
//! journal - every batch's inputs and actions - in memory. Large bodies now
//! go to this file and sled keeps their offset and length; the chain's hashes
//! still cover the bytes, so [`super::Journal::verify`] catches any change here,
//! and every read of a body checks it against the hash sled holds.
//!
//! Durability: a body is written and synced before the sled entry that points
//! to it (a new file's directory entry too), so a durable entry never points
//! past the end of its file. A crash between the two leaves unreferenced
//! bytes at the end of the file, which the next append simply follows.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub(super) struct Bodies {
    dir: PathBuf,
    /// The file of the run appended to last (a process appends to one run at a time).
    writer: Mutex<Option<Writer>>,
}

struct Writer {
    run: String,
    file: File,
    len: u64,
}

impl Bodies {
    pub(super) fn new(journal_dir: &Path) -> Self {
        Bodies {
            dir: journal_dir.join("bodies"),
            writer: Mutex::new(None),
        }
    }

    /// The body file of `run`. Run ids are ObjectId hex; any other id is
    /// hex-encoded so that it cannot name a path outside the directory.
    pub(super) fn path(&self, run: &str) -> PathBuf {
        let safe = !run.is_empty()
            && run.len() <= 64
            && run.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if safe {
            self.dir.join(run)
        } else {
            self.dir.join(format!(
                "x{}",
                crate::hash::to_hex(&crate::hash::sha256(run.as_bytes()))
            ))
        }
    }

    /// Appends `body` to `run`'s file and syncs it; returns its offset.
    pub(super) fn append(&self, run: &str, body: &[u8]) -> std::io::Result<u64> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if writer.as_ref().is_none_or(|w| w.run != run) {
            std::fs::create_dir_all(&self.dir)?;
            let file = OpenOptions::new().create(true).append(true).open(self.path(run))?;
            let len = file.metadata()?.len();
            if len == 0 {
                // A new file: make its name (and the directory's) durable too,
                // not only its bytes.
                File::open(&self.dir)?.sync_all()?;
                if let Some(journal) = self.dir.parent() {
                    File::open(journal)?.sync_all()?;
                }
            }
            *writer = Some(Writer {
                run: run.to_string(),
                file,
                len,
            });
        }
        let w = writer.as_mut().expect("opened above");
        let offset = w.len;
        let written = w.file.write_all(body).and_then(|()| w.file.sync_data());
        if let Err(e) = written {
            // The file's length is unknown now: look again on the next append.
            *writer = None;
            return Err(e);
        }
        w.len += body.len() as u64;
        Ok(offset)
    }

    pub(super) fn reader(&self, run: &str) -> Reader {
        Reader {
            path: self.path(run),
            file: None,
        }
    }
}

/// Reads bodies of one run; opens its file on the first read.
pub(super) struct Reader {
    path: PathBuf,
    file: Option<File>,
}

impl Reader {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The `len` bytes at `offset`; the error is a reason to show after the file's name.
    pub(super) fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        if self.file.is_none() {
            let file = File::open(&self.path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => "is missing".to_string(),
                _ => format!("cannot be read: {e}"),
            })?;
            self.file = Some(file);
        }
        let file = self.file.as_ref().expect("opened above");
        let size = file.metadata().map_err(|e| format!("cannot be read: {e}"))?.len();
        let end = offset.checked_add(len).filter(|end| *end <= size).ok_or_else(|| {
            format!(
                "ends at byte {size}, but the entry is bytes {offset}..{} (truncated?)",
                offset.saturating_add(len)
            )
        })?;
        let mut bytes =
            vec![0; usize::try_from(end - offset).map_err(|_| "is too large to read on this platform".to_string())?];
        file.read_exact_at(&mut bytes, offset)
            .map_err(|e| format!("cannot be read: {e}"))?;
        Ok(bytes)
    }
}
