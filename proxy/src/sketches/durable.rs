//! The snapshot file: every serving sketch's plugin snapshot with what it belongs to,
//! written atomically (temporary file, fsync, rename, fsync of the directory) and read
//! back record by record, each record checksummed on its own so one damaged record
//! costs one sketch, not all of them.
//!
//! ```text
//! file   := MAGIC record*
//! record := body_len u32 | crc32(body) u32 | body
//! body   := labels u16 (name u16-str, value u32-str)* | function u16-str
//!           | plugin u16-str | plugin version u16-str | retention_ms i64 | newest i64
//!           | plugin snapshot bytes (the rest)
//! ```
//! Integers are little-endian; a `u16-str` is a u16 length then UTF-8 bytes.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::prompb::Label;

/// The file's first bytes; another version of the format has others.
const MAGIC: &[u8; 8] = b"SPSNAP01";
/// The snapshot file's name in the data directory.
pub const FILE_NAME: &str = "sketches.snap";
/// Records longer than this are damage, not sketches (a sketch of a year of samples
/// at 10 s takes about 25 MB).
const MAX_RECORD_BYTES: u32 = 1 << 30;

/// A failure to write or read the snapshot file.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a snapshot file of this version.
    #[error("{path}: not a sketch snapshot file of this version")]
    Foreign {
        /// The file.
        path: PathBuf,
    },
}

/// One sketch as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The series' labels, sorted by name.
    pub labels: Vec<Label>,
    /// The PromQL function the sketch answers.
    pub function: String,
    /// The plugin that made it, and its version: only that plugin may restore it.
    pub plugin: String,
    /// See `plugin`.
    pub version: String,
    /// The retention it was created with.
    pub retention_ms: i64,
    /// Its newest sample.
    pub newest: i64,
    /// What the plugin's `snapshot` returned.
    pub bytes: Vec<u8>,
}

/// Writes a snapshot file next to the live one and replaces it on [`Writer::finish`].
#[derive(Debug)]
pub struct Writer {
    out: BufWriter<File>,
    temporary: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    body: Vec<u8>,
    /// Records written.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
}

impl Writer {
    /// Starts a snapshot in `dir` (created if missing).
    pub fn create(dir: &Path) -> Result<Self, DurableError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DurableError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let temporary = dir.join(format!("{FILE_NAME}.tmp"));
        let file = File::create(&temporary).map_err(io(&temporary))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC).map_err(io(&temporary))?;
        Ok(Self {
            out,
            path: dir.join(FILE_NAME),
            dir: dir.to_owned(),
            temporary,
            body: Vec::new(),
            records: 0,
            bytes: MAGIC.len() as u64,
        })
    }

    /// Appends one record.
    pub fn add(&mut self, record: &Record) -> Result<(), DurableError> {
        self.body.clear();
        encode(record, &mut self.body);
        let len = u32::try_from(self.body.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD_BYTES)
            .ok_or_else(|| DurableError::Io {
                path: self.temporary.clone(),
                source: std::io::Error::other("a sketch snapshot over 1 GiB"),
            })?;
        let crc = crc32fast::hash(&self.body);
        let write = |out: &mut BufWriter<File>, body: &[u8]| -> std::io::Result<()> {
            out.write_all(&len.to_le_bytes())?;
            out.write_all(&crc.to_le_bytes())?;
            out.write_all(body)
        };
        write(&mut self.out, &self.body).map_err(|source| DurableError::Io {
            path: self.temporary.clone(),
            source,
        })?;
        self.records += 1;
        self.bytes += 8 + u64::from(len);
        Ok(())
    }

    /// Makes the file durable and puts it in place of the previous snapshot.
    pub fn finish(self) -> Result<(u64, u64), DurableError> {
        let temporary = self.temporary.clone();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DurableError::Io { path, source }
        };
        let file = self.out.into_inner().map_err(|e| DurableError::Io {
            path: temporary.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&temporary))?;
        drop(file);
        std::fs::rename(&temporary, &self.path).map_err(io(&self.path))?;
        // The rename itself is durable once the directory is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok((self.records, self.bytes))
    }
}

/// Reads a snapshot file record by record.
#[derive(Debug)]
pub struct Reader {
    input: BufReader<File>,
    path: PathBuf,
    /// The file's size.
    pub size: u64,
    /// Bytes read so far.
    pub read: u64,
}

/// What [`Reader::next_record`] found.
#[derive(Debug)]
pub enum Next {
    /// A whole, intact record.
    Record(Record),
    /// A record whose checksum or fields are wrong; the next one can still be read.
    Damaged(String),
    /// The end of the file, or damage that leaves the rest unreadable (said why).
    End(Option<String>),
}

impl Reader {
    /// Opens the snapshot in `dir`; `None` when there is none.
    pub fn open(dir: &Path) -> Result<Option<Self>, DurableError> {
        let path = dir.join(FILE_NAME);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(DurableError::Io { path, source }),
        };
        let size = file
            .metadata()
            .map_err(|source| DurableError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 8];
        if input.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Err(DurableError::Foreign { path });
        }
        Ok(Some(Self {
            input,
            path,
            size,
            read: MAGIC.len() as u64,
        }))
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next record.
    pub fn next_record(&mut self) -> Next {
        let mut head = [0u8; 8];
        match self.input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && self.read == self.size => {
                return Next::End(None);
            }
            Err(e) => return Next::End(Some(format!("record header at byte {}: {e}", self.read))),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD_BYTES || u64::from(len) > self.size - self.read {
            return Next::End(Some(format!(
                "record at byte {} claims {len} bytes, past the end of the file",
                self.read
            )));
        }
        let mut body = vec![0u8; len as usize];
        if let Err(e) = self.input.read_exact(&mut body) {
            return Next::End(Some(format!("record at byte {}: {e}", self.read)));
        }
        let at = self.read;
        self.read += 8 + u64::from(len);
        if crc32fast::hash(&body) != crc {
            return Next::Damaged(format!("record at byte {at}: checksum mismatch"));
        }
        match decode(body) {
            Some(record) => Next::Record(record),
            None => Next::Damaged(format!("record at byte {at}: malformed fields")),
        }
    }
}

/// Writes a length-prefixed string. Names and values past the prefix's range cannot
/// come through ingest's limits; they are cut rather than corrupt the record.
fn put_str(out: &mut Vec<u8>, s: &str, wide: bool) {
    let bytes = s.as_bytes();
    let n = if wide {
        let n = bytes.len().min(u32::MAX as usize);
        out.extend_from_slice(&(n as u32).to_le_bytes());
        n
    } else {
        let n = bytes.len().min(u16::MAX as usize);
        out.extend_from_slice(&(n as u16).to_le_bytes());
        n
    };
    out.extend_from_slice(&bytes[..n]);
}

fn encode(record: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(&(record.labels.len() as u16).to_le_bytes());
    for label in &record.labels {
        put_str(out, &label.name, false);
        put_str(out, &label.value, true);
    }
    put_str(out, &record.function, false);
    put_str(out, &record.plugin, false);
    put_str(out, &record.version, false);
    out.extend_from_slice(&record.retention_ms.to_le_bytes());
    out.extend_from_slice(&record.newest.to_le_bytes());
    out.extend_from_slice(&record.bytes);
}

/// The fields of a record body; `None` when they do not parse.
fn decode(body: Vec<u8>) -> Option<Record> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let slice = body.get(*at..at.checked_add(n)?)?;
        *at += n;
        Some(slice)
    };
    let int = |at: &mut usize, n: usize| -> Option<u64> {
        let bytes = take(at, n)?;
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(bytes);
        Some(u64::from_le_bytes(b))
    };
    let string = |at: &mut usize, wide: bool| -> Option<String> {
        let n = int(at, if wide { 4 } else { 2 })? as usize;
        String::from_utf8(take(at, n)?.to_vec()).ok()
    };
    let count = int(&mut at, 2)?;
    let mut labels = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name = string(&mut at, false)?;
        let value = string(&mut at, true)?;
        labels.push(Label { name, value });
    }
    let function = string(&mut at, false)?;
    let plugin = string(&mut at, false)?;
    let version = string(&mut at, false)?;
    let retention_ms = int(&mut at, 8)? as i64;
    let newest = int(&mut at, 8)? as i64;
    let bytes = body.get(at..)?.to_vec();
    Some(Record {
        labels,
        function,
        plugin,
        version,
        retention_ms,
        newest,
        bytes,
    })
}

#[cfg(test)]
mod tests;
