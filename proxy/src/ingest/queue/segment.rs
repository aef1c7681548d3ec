//! Segment files and records of a queue directory.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A segment is closed and a new one started past this size (by default).
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// `len u32 | crc32c u32 | appended_ms i64 | samples u32`.
pub const HEADER_BYTES: usize = 20;
/// A length field above this is corruption, not a record (bodies are limited far below).
const MAX_RECORD_BYTES: u32 = 1 << 30;

/// A place in the queue: a segment id and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Segment id (its file name).
    pub segment: u64,
    /// Byte offset of a record boundary.
    pub offset: u64,
}

/// One queued record.
#[derive(Debug, Clone)]
pub struct Record {
    /// When it was appended (ms since the epoch), for the queue-age metric.
    pub appended_ms: i64,
    /// Samples it holds, for the sent and failed counters.
    pub samples: u32,
    /// A snappy-compressed `WriteRequest`.
    pub payload: Vec<u8>,
}

/// The segment files and their sizes, by id.
#[derive(Debug, Clone, Default)]
pub struct Segments(BTreeMap<u64, u64>);

/// The file name of segment `id`.
pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

impl Segments {
    /// Lists the segments in `dir`, cuts a torn record off the last one and opens it
    /// for appending (creating segment 1 in an empty directory).
    pub fn recover(dir: &Path, segment_bytes: u64) -> io::Result<(Self, Writer)> {
        let mut segments = Self::default();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            segments.0.insert(id, fs::metadata(path(dir, id))?.len());
        }
        let writer = match segments.0.last_key_value().map(|(&id, _)| id) {
            Some(id) => {
                let valid = valid_length(&path(dir, id))?;
                let file = OpenOptions::new().read(true).write(true).open(path(dir, id))?;
                if file.metadata()?.len() != valid {
                    tracing::warn!(
                        segment = id,
                        kept = valid,
                        "cut a torn record off the queue's last segment"
                    );
                    file.set_len(valid)?;
                    file.sync_all()?;
                }
                segments.0.insert(id, valid);
                Writer::at(file, id, valid, segment_bytes)?
            }
            None => {
                let writer = Writer::create(dir, 1, segment_bytes)?;
                segments.0.insert(1, 0);
                writer
            }
        };
        Ok((segments, writer))
    }

    /// Whether `at` lies on a record boundary the queue still holds (or its end).
    pub fn contains(&self, at: Position) -> bool {
        self.0.get(&at.segment).is_some_and(|&size| at.offset <= size)
    }

    /// The oldest record's position.
    pub fn first_position(&self) -> Position {
        Position {
            segment: self.0.first_key_value().map_or(1, |(&id, _)| id),
            offset: 0,
        }
    }

    /// Past the newest record.
    pub fn end(&self) -> Position {
        self.0.last_key_value().map_or(
            Position {
                segment: 1,
                offset: 0,
            },
            |(&segment, &offset)| Position { segment, offset },
        )
    }

    /// Bytes from `at` to the end.
    pub fn bytes_from(&self, at: Position) -> u64 {
        self.0
            .range(at.segment..)
            .map(|(_, &size)| size)
            .sum::<u64>()
            .saturating_sub(at.offset)
    }

    /// Size of segment `id` (0 if unknown).
    pub fn size(&self, id: u64) -> u64 {
        self.0.get(&id).copied().unwrap_or(0)
    }

    /// The segment after `id`.
    pub fn next_after(&self, id: u64) -> Option<u64> {
        self.0.range(id + 1..).next().map(|(&id, _)| id)
    }

    /// Records the size of segment `id` (adding it if new).
    pub fn set_size(&mut self, id: u64, size: u64) {
        self.0.insert(id, size);
    }

    /// Forgets the segments before `id` and returns them, for deletion.
    pub fn drop_before(&mut self, id: u64) -> Vec<u64> {
        let kept = self.0.split_off(&id);
        let dropped = std::mem::replace(&mut self.0, kept);
        dropped.into_keys().collect()
    }
}

/// Appends records to the newest segment.
#[derive(Debug)]
pub struct Writer {
    id: u64,
    file: File,
    len: u64,
    /// `len` at the last sync: everything before it is acknowledged.
    synced: u64,
    segment_bytes: u64,
    buffer: Vec<u8>,
}

impl Writer {
    fn create(dir: &Path, id: u64, segment_bytes: u64) -> io::Result<Self> {
        let file_path = path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&file_path)?;
        // The new file's directory entry must be durable before records in it are. On
        // failure (a full disk) the empty file goes, so a later attempt can create it.
        let synced = File::open(dir).and_then(|d| d.sync_all());
        if let Err(e) = synced {
            let _ = fs::remove_file(&file_path);
            return Err(e);
        }
        Self::at(file, id, 0, segment_bytes)
    }

    fn at(mut file: File, id: u64, len: u64, segment_bytes: u64) -> io::Result<Self> {
        file.seek(SeekFrom::Start(len))?;
        Ok(Self {
            id,
            file,
            len,
            synced: len,
            segment_bytes,
            buffer: Vec::new(),
        })
    }

    /// Current segment id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Bytes written to the current segment.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Past the last record written.
    pub fn position(&self) -> Position {
        Position {
            segment: self.id,
            offset: self.len,
        }
    }

    /// Starts segment `id + 1` when the current one is full; returns the new id.
    pub fn rotate_if_full(&mut self, dir: &Path) -> io::Result<Option<u64>> {
        if self.len < self.segment_bytes {
            return Ok(None);
        }
        self.file.sync_data()?;
        *self = Self::create(dir, self.id + 1, self.segment_bytes)?;
        Ok(Some(self.id))
    }

    /// Cuts what was written since the last sync (after a failed write, which may
    /// have left half a record): truncating needs no free space, and no segment file
    /// is left behind for the failure.
    pub fn rewind(&mut self) -> io::Result<()> {
        self.file.set_len(self.synced)?;
        self.file.seek(SeekFrom::Start(self.synced))?;
        self.len = self.synced;
        Ok(())
    }

    /// Gives up on the current segment (when it cannot be rewound) and starts the next.
    pub fn abandon(&mut self, dir: &Path) -> io::Result<u64> {
        *self = Self::create(dir, self.id + 1, self.segment_bytes)?;
        Ok(self.id)
    }

    /// Writes one record (not yet synced).
    pub fn write(&mut self, appended_ms: i64, samples: u32, payload: &[u8]) -> io::Result<()> {
        let body_len = u32::try_from(payload.len() + HEADER_BYTES - 8)
            .ok()
            .filter(|&n| n <= MAX_RECORD_BYTES)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        self.buffer.clear();
        self.buffer.extend_from_slice(&body_len.to_le_bytes());
        self.buffer.extend_from_slice(&[0; 4]);
        self.buffer.extend_from_slice(&appended_ms.to_le_bytes());
        self.buffer.extend_from_slice(&samples.to_le_bytes());
        self.buffer.extend_from_slice(payload);
        let crc = crc32c::crc32c(&self.buffer[8..]);
        self.buffer[4..8].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all(&self.buffer)?;
        self.len += self.buffer.len() as u64;
        Ok(())
    }

    /// Makes everything written durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.synced = self.len;
        Ok(())
    }
}

/// Reads the record at `offset`, or `None` if it is torn or corrupt.
pub fn read_record(file: &mut File, offset: u64) -> io::Result<Option<Record>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut header = [0u8; HEADER_BYTES];
    if !read_full(file, &mut header)? {
        return Ok(None);
    }
    let word = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let body_len = word(0);
    if !(12..=MAX_RECORD_BYTES).contains(&body_len) {
        return Ok(None);
    }
    let mut payload = vec![0; body_len as usize - 12];
    if !read_full(file, &mut payload)? {
        return Ok(None);
    }
    let mut digest = crc32c::crc32c(&header[8..]);
    digest = crc32c::crc32c_append(digest, &payload);
    if digest != word(4) {
        return Ok(None);
    }
    let mut ms = [0u8; 8];
    ms.copy_from_slice(&header[8..16]);
    Ok(Some(Record {
        appended_ms: i64::from_le_bytes(ms),
        samples: word(16),
        payload,
    }))
}

/// Fills `buf`; `false` at end of file.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<bool> {
    match file.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Length of the run of whole, intact records at the start of a segment.
fn valid_length(segment: &Path) -> io::Result<u64> {
    let mut file = File::open(segment)?;
    let mut offset = 0;
    while let Some(record) = read_record(&mut file, offset)? {
        offset += (HEADER_BYTES + record.payload.len()) as u64;
    }
    Ok(offset)
}
