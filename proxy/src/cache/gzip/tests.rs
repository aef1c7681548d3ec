use std::io::Read as _;

use super::*;

/// Parts of an answer: `Ok` a stored piece, `Err` literal text.
fn texts() -> Vec<(&'static str, Vec<Result<String, String>>)> {
    let long: String = (0..20_000)
        .map(|i| format!("[{i},\"{}\"],", i * 7 % 13))
        .collect();
    vec![
        ("nothing", vec![]),
        ("one literal", vec![Err("{\"status\":\"success\"}".into())]),
        ("one piece", vec![Ok("[1,\"2\"],[3,\"4\"]".into())]),
        ("empty piece", vec![Ok(String::new()), Err("x".into())]),
        (
            "mixed",
            vec![
                Err("{\"a\":[".into()),
                Ok("[1,\"2\"]".into()),
                Err(",".into()),
                Ok("[3,\"4\"]".into()),
                Err("]}".into()),
            ],
        ),
        (
            "long piece",
            vec![Err("[".into()), Ok(long.clone()), Err("]".into())],
        ),
        // Over a stored block's 65,535 bytes, and over the compressed-literal threshold.
        ("long literal", vec![Err(long.repeat(2)), Ok("tail".into())]),
    ]
}

#[test]
fn joined_pieces_decompress_to_the_plain_answer() {
    for (name, parts) in texts() {
        let (mut plain, mut gzip) = (Plain::default(), Gzip::default());
        for part in &parts {
            match part {
                Ok(text) => {
                    let piece = Piece::new(Bytes::from(text.clone()));
                    plain.piece(&piece);
                    gzip.piece(&piece);
                }
                Err(text) => {
                    plain.literal(text.as_bytes());
                    gzip.literal(text.as_bytes());
                }
            }
        }
        let expected: String = parts.iter().map(|p| p.clone().unwrap_or_else(|e| e)).collect();
        assert_eq!(plain.0, expected.as_bytes(), "{name}: plain");
        let compressed = gzip.finish();
        let mut decoded = Vec::new();
        // GzDecoder reads one member and checks its CRC-32 and length.
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut decoded)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected.as_bytes(), "{name}: gzip");
    }
}

#[test]
fn a_piece_compresses_repetitive_text() {
    let text: String = (0..5_000)
        .map(|i| format!("[{},\"0.5\"],", 1_700_000_000 + i * 60))
        .collect();
    let piece = Piece::new(Bytes::from(text.clone()));
    assert!(
        piece.deflate.len() * 4 < text.len(),
        "{} of {}",
        piece.deflate.len(),
        text.len()
    );
}
