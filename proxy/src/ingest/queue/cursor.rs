//! The cursor file: where delivery resumes, written in place.
//!
//! ```text
//! <dir>/cursor   two slots of 32 bytes: seq u64 | segment u64 | offset u64 | crc32c u32 | 0 u32
//! ```
//!
//! A move overwrites the older slot with a higher sequence number and syncs. Writing
//! bytes a file already holds takes no new space, so the cursor still moves on a full
//! disk, and moving it is what lets the delivered segments be deleted and the disk
//! recover. A torn write spoils one slot only; the other still names a position
//! delivery may resume from (at least once). Reading takes the valid slot with the
//! higher sequence number. The file is created whole (temporary file, sync, rename)
//! when the queue is opened.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::segment::Position;

const NAME: &str = "cursor";
const SLOT_BYTES: usize = 32;
/// The format before slots: `segment u64 | offset u64 | crc32c u32`, replaced whole.
const OLD_BYTES: usize = 20;

/// The open cursor file.
#[derive(Debug)]
pub struct Cursor {
    file: File,
    seq: u64,
}

impl Cursor {
    /// Opens the cursor file of `dir`, creating it at `first` when missing (or in the
    /// old format, or unreadable); returns the position it holds.
    pub fn open(dir: &Path, first: Position) -> io::Result<(Self, Option<Position>)> {
        let path = dir.join(NAME);
        let bytes = match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let found = bytes.as_deref().and_then(|b| match b.len() {
            OLD_BYTES => old_slot(b).map(|at| (0, at)),
            _ => newest_slot(b),
        });
        if bytes.as_ref().is_some_and(|b| found.is_none() && !b.is_empty()) {
            tracing::warn!(dir = %dir.display(), "unreadable queue cursor; delivering from the oldest segment");
        }
        let in_place = bytes.as_ref().is_some_and(|b| b.len() == 2 * SLOT_BYTES);
        let (seq, at) = found.unwrap_or((0, first));
        if !in_place {
            create(dir, seq, at)?;
        }
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok((Self { file, seq }, found.map(|(_, at)| at)))
    }

    /// Persists `at`: overwrites the older slot and syncs. Needs no free space.
    pub fn write(&mut self, at: Position) -> io::Result<()> {
        let seq = self.seq + 1;
        let slot = encode(seq, at);
        self.file.write_all_at(&slot, offset_of(seq))?;
        self.file.sync_data()?;
        self.seq = seq;
        Ok(())
    }
}

fn offset_of(seq: u64) -> u64 {
    (seq % 2) * SLOT_BYTES as u64
}

fn encode(seq: u64, at: Position) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    slot[..8].copy_from_slice(&seq.to_le_bytes());
    slot[8..16].copy_from_slice(&at.segment.to_le_bytes());
    slot[16..24].copy_from_slice(&at.offset.to_le_bytes());
    let crc = crc32c::crc32c(&slot[..24]);
    slot[24..28].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn decode(slot: &[u8]) -> Option<(u64, Position)> {
    let word = |i: usize| {
        slot.get(i..i + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let crc: [u8; 4] = slot.get(24..28)?.try_into().ok()?;
    if crc != crc32c::crc32c(slot.get(..24)?).to_le_bytes() {
        return None;
    }
    Some((
        word(0)?,
        Position {
            segment: word(8)?,
            offset: word(16)?,
        },
    ))
}

fn newest_slot(bytes: &[u8]) -> Option<(u64, Position)> {
    bytes
        .chunks(SLOT_BYTES)
        .take(2)
        .filter_map(decode)
        .max_by_key(|(seq, _)| *seq)
}

fn old_slot(bytes: &[u8]) -> Option<Position> {
    let (body, crc) = bytes.split_at_checked(16)?;
    if crc != crc32c::crc32c(body).to_le_bytes() {
        return None;
    }
    let word = |i: usize| {
        body.get(i..i + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    Some(Position {
        segment: word(0)?,
        offset: word(8)?,
    })
}

/// Writes a whole cursor file holding `at` in both slots: temporary file, sync,
/// rename, directory sync.
fn create(dir: &Path, seq: u64, at: Position) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(2 * SLOT_BYTES);
    // Slot `seq` holds `at`; the other slot an older copy of it, so either is valid.
    let older = seq.saturating_sub(1);
    let (first, second) = if seq.is_multiple_of(2) {
        (encode(seq, at), encode(older, at))
    } else {
        (encode(older, at), encode(seq, at))
    };
    bytes.extend_from_slice(&first);
    bytes.extend_from_slice(&second);
    let temporary = dir.join("cursor.tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_data()?;
    fs::rename(&temporary, dir.join(NAME))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segment: u64, offset: u64) -> Position {
        Position { segment, offset }
    }

    #[test]
    fn moves_are_read_back_after_a_reopen_and_a_torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cursor, found) = Cursor::open(dir.path(), at(1, 0)).unwrap();
        assert_eq!(found, None);
        for (i, offset) in [10, 20, 30].into_iter().enumerate() {
            cursor.write(at(1, offset)).unwrap();
            let (_, found) = Cursor::open(dir.path(), at(1, 0)).unwrap();
            assert_eq!(found, Some(at(1, offset)), "move {i}");
        }
        // Tear the newest slot (seq 3, the second): the one before it remains.
        let path = dir.path().join(NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[SLOT_BYTES + 9] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let (mut cursor, found) = Cursor::open(dir.path(), at(1, 0)).unwrap();
        assert_eq!(found, Some(at(1, 20)));
        cursor.write(at(2, 5)).unwrap();
        assert_eq!(Cursor::open(dir.path(), at(1, 0)).unwrap().1, Some(at(2, 5)));
    }

    #[test]
    fn the_old_format_is_read_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = Vec::new();
        old.extend_from_slice(&7u64.to_le_bytes());
        old.extend_from_slice(&99u64.to_le_bytes());
        old.extend_from_slice(&crc32c::crc32c(&old).to_le_bytes());
        fs::write(dir.path().join(NAME), &old).unwrap();
        let (mut cursor, found) = Cursor::open(dir.path(), at(1, 0)).unwrap();
        assert_eq!(found, Some(at(7, 99)));
        assert_eq!(fs::read(dir.path().join(NAME)).unwrap().len(), 2 * SLOT_BYTES);
        cursor.write(at(8, 0)).unwrap();
        assert_eq!(Cursor::open(dir.path(), at(1, 0)).unwrap().1, Some(at(8, 0)));
    }
}
