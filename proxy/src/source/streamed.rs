//! The STREAMED_XOR_CHUNKS answer of remote read: frames of `uvarint length`,
//! big-endian CRC-32C and a `ChunkedReadResponse`, holding series as raw TSDB chunks.
//! Prometheus sends stored chunks without decoding them, which is what makes this mode
//! several times cheaper for it than SAMPLES. Chunks are decoded with `rusty-chunkenc`.

use prost::Message;

use crate::prompb::{ChunkedReadResponse, ReadSeries, Sample};

/// Prometheus' own reader refuses larger frames (`DefaultChunkedReadLimit`).
const MAX_FRAME_BYTES: u64 = 50 << 20;

/// Chunk encoding of float samples.
const XOR: i32 = 1;

/// The series of a streamed answer, each with the index of the query it answers, in
/// the order sent; a series split over frames is joined. `ranges[i]` is query i's
/// closed time range; samples outside it are dropped.
pub fn decode(mut body: &[u8], ranges: &[(i64, i64)]) -> Result<Vec<(usize, ReadSeries)>, String> {
    let mut out: Vec<(usize, ReadSeries)> = Vec::new();
    while !body.is_empty() {
        // A server error after the first frame comes as plain text appended to the
        // stream with status 200: every malformed frame is an error, never an end.
        let length = prost::encoding::decode_varint(&mut body).map_err(|_| stream_error(body))?;
        if length > MAX_FRAME_BYTES {
            return Err(format!(
                "a frame of {length} bytes is over the {MAX_FRAME_BYTES}-byte limit"
            ));
        }
        let length = usize::try_from(length).map_err(|e| e.to_string())?;
        if body.len() < 4 + length {
            return Err(stream_error(body));
        }
        let (crc, rest) = body.split_at(4);
        let (message, rest) = rest.split_at(length);
        body = rest;
        let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(message) != want {
            return Err("a frame's CRC-32C does not match".to_owned());
        }
        let frame = ChunkedReadResponse::decode(message).map_err(|e| format!("protobuf: {e}"))?;
        let query = usize::try_from(frame.query_index)
            .ok()
            .filter(|q| *q < ranges.len())
            .ok_or_else(|| format!("query index {} out of range", frame.query_index))?;
        let (start, end) = ranges[query];
        for series in frame.chunked_series {
            let mut samples = Vec::new();
            for chunk in &series.chunks {
                if chunk.r#type != XOR {
                    return Err(format!(
                        "chunk encoding {} (native histograms) is not supported",
                        chunk.r#type
                    ));
                }
                if chunk.data.len() < 2 || chunk.data[..2] == [0, 0] {
                    continue;
                }
                let (_, decoded) = rusty_chunkenc::xor::read_xor_chunk_data(&chunk.data)
                    .map_err(|e| format!("XOR chunk: {e}"))?;
                samples.extend(
                    decoded
                        .samples()
                        .iter()
                        .filter(|s| s.timestamp >= start && s.timestamp <= end)
                        .map(|s| Sample {
                            value: s.value,
                            timestamp: s.timestamp,
                        }),
                );
            }
            match out.last_mut() {
                Some((q, last)) if *q == query && last.labels == series.labels => {
                    last.samples.append(&mut samples)
                }
                _ => out.push((
                    query,
                    ReadSeries {
                        labels: series.labels,
                        samples,
                    },
                )),
            }
        }
    }
    Ok(out)
}

/// What a broken stream says: the server's plain-text error when that is what follows.
fn stream_error(rest: &[u8]) -> String {
    let text = String::from_utf8_lossy(&rest[..rest.len().min(512)]);
    format!("the stream breaks off: {}", text.trim())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::decode;
    use crate::prompb::{ByteLabel, Chunk, ChunkedReadResponse, ChunkedSeries};

    /// One frame holding `chunks` of a series named `name`, for query `query`.
    fn frame(name: &str, query: i64, chunks: Vec<Chunk>) -> Vec<u8> {
        let message = ChunkedReadResponse {
            chunked_series: vec![ChunkedSeries {
                labels: vec![ByteLabel {
                    name: b"__name__".to_vec(),
                    value: name.as_bytes().to_vec(),
                }],
                chunks,
            }],
            query_index: query,
        }
        .encode_to_vec();
        let mut out = Vec::new();
        prost::encoding::encode_varint(message.len() as u64, &mut out);
        out.extend_from_slice(&crc32c::crc32c(&message).to_be_bytes());
        out.extend_from_slice(&message);
        out
    }

    /// An XOR chunk of `(t, v)` samples, encoded by `rusty-chunkenc`.
    fn xor(samples: &[(i64, f64)]) -> Chunk {
        let chunk = rusty_chunkenc::xor::XORChunk::new(
            samples
                .iter()
                .map(|&(timestamp, value)| rusty_chunkenc::XORSample { timestamp, value })
                .collect(),
        );
        let mut data = Vec::new();
        chunk.write(&mut data).unwrap();
        Chunk {
            min_time_ms: samples[0].0,
            max_time_ms: samples[samples.len() - 1].0,
            r#type: 1,
            data,
        }
    }

    #[test]
    fn frames_decode_join_split_series_and_trim_to_the_range() {
        let first: Vec<(i64, f64)> = (0..150).map(|i| (i * 1000, f64::from(i as i32) * 0.5)).collect();
        let second: Vec<(i64, f64)> = (150..200).map(|i| (i * 1000, f64::from(i as i32))).collect();
        let mut body = frame("a", 0, vec![xor(&first)]);
        body.extend(frame("a", 0, vec![xor(&second)]));
        body.extend(frame("b", 1, vec![xor(&[(5000, 1.0)])]));
        let series = decode(&body, &[(10_000, 160_000), (0, 10_000)]).unwrap();
        assert_eq!(series.len(), 2, "the split series is joined");
        assert_eq!(series[0].0, 0);
        let times: Vec<i64> = series[0].1.samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(times, (10..=160).map(|i| i * 1000).collect::<Vec<_>>());
        assert_eq!(series[1].0, 1);
        assert_eq!(series[1].1.samples[0].value, 1.0);
    }

    #[test]
    fn broken_streams_are_errors_not_ends() {
        let good = frame("a", 0, vec![xor(&[(0, 1.0), (1000, 2.0)])]);
        let ranges = [(0, 10_000)];
        // A server error after a frame: plain text appended with status 200.
        let mut appended = good.clone();
        appended.extend_from_slice(b"expanding series: context canceled\n");
        assert!(decode(&appended, &ranges).is_err());
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert!(decode(&bad_crc, &ranges).unwrap_err().contains("CRC"));
        assert!(decode(&good[..good.len() - 3], &ranges).is_err(), "a short frame");
        assert!(
            decode(&frame("a", 3, vec![]), &ranges)
                .unwrap_err()
                .contains("query index")
        );
        let histogram = frame(
            "a",
            0,
            vec![Chunk {
                r#type: 2,
                ..xor(&[(0, 1.0)])
            }],
        );
        assert!(
            decode(&histogram, &ranges)
                .unwrap_err()
                .contains("native histograms")
        );
    }
}
