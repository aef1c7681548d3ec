//! Answers joined from stored pieces, written plain or gzip-compressed without
//! compressing the stored pieces again.
//!
//! Each [`Piece`] keeps its text and the same text as raw DEFLATE blocks from a fresh
//! compressor, ended by a sync flush: they refer to nothing before them and end on a
//! byte boundary, so pieces can be laid end to end in one DEFLATE stream (as `pigz`
//! joins its blocks). The text between pieces goes in stored blocks, and the gzip
//! trailer's CRC-32 is combined from the pieces' own.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

/// Text with its DEFLATE form.
#[derive(Debug, Clone)]
pub struct Piece {
    text: Bytes,
    deflate: Bytes,
    crc: u32,
}

impl Piece {
    /// Compresses `text` (at the fastest level: pieces are made while answering).
    pub fn new(text: Bytes) -> Self {
        let mut compress = Compress::new(Compression::fast(), false);
        let mut out = Vec::with_capacity(text.len() / 4 + 64);
        let mut input = &text[..];
        loop {
            out.reserve(input.len() / 2 + 1024);
            let before = compress.total_in();
            // Only a stream error fails, which a fresh compressor given bytes never has.
            if compress
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            let used = usize::try_from(compress.total_in() - before).unwrap_or(input.len());
            input = &input[used..];
            // zlib's rule: the flush is complete once a call leaves output space unused.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&text);
        Self {
            crc: crc.finalize(),
            deflate: out.into(),
            text,
        }
    }

    /// The text.
    pub fn text(&self) -> &Bytes {
        &self.text
    }

    /// Bytes held: the text and its compressed form.
    pub fn weight(&self) -> usize {
        self.text.len() + self.deflate.len()
    }
}

/// Where an answer is written.
pub trait Sink {
    /// Text written as it is given.
    fn literal(&mut self, text: &[u8]);
    /// A stored piece.
    fn piece(&mut self, piece: &Piece);
}

/// The plain answer.
#[derive(Debug, Default)]
pub struct Plain(pub Vec<u8>);

impl Sink for Plain {
    fn literal(&mut self, text: &[u8]) {
        self.0.extend_from_slice(text);
    }

    fn piece(&mut self, piece: &Piece) {
        self.0.extend_from_slice(&piece.text);
    }
}

/// The answer as one gzip member.
#[derive(Debug)]
pub struct Gzip {
    out: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
}

/// Literal text longer than this is compressed as a piece of its own.
const COMPRESS_LITERAL: usize = 4096;

impl Default for Gzip {
    fn default() -> Self {
        // Magic, DEFLATE, no flags, no time, no extra flags, unknown OS.
        let out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        Self {
            out,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }
}

impl Gzip {
    /// The gzip member: a final empty stored block, then the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
        self.out.extend_from_slice(&self.crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32.
        self.out.extend_from_slice(&(self.len as u32).to_le_bytes());
        self.out
    }
}

impl Sink for Gzip {
    fn literal(&mut self, text: &[u8]) {
        if text.len() > COMPRESS_LITERAL {
            self.piece(&Piece::new(Bytes::copy_from_slice(text)));
            return;
        }
        for chunk in text.chunks(usize::from(u16::MAX)) {
            // A non-final stored block; every block before it ended on a byte boundary.
            let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
            self.out.push(0x00);
            self.out.extend_from_slice(&len.to_le_bytes());
            self.out.extend_from_slice(&(!len).to_le_bytes());
            self.out.extend_from_slice(chunk);
        }
        self.crc.update(text);
        self.len += text.len() as u64;
    }

    fn piece(&mut self, piece: &Piece) {
        self.out.extend_from_slice(&piece.deflate);
        self.crc.combine(&crc32fast::Hasher::new_with_initial_len(
            piece.crc,
            piece.text.len() as u64,
        ));
        self.len += piece.text.len() as u64;
    }
}

#[cfg(test)]
mod tests;
