use super::*;

fn record(i: usize, bytes: usize) -> Record {
    Record {
        labels: crate::prompb::test_series(i),
        function: "quantile_over_time".into(),
        plugin: "quantile".into(),
        version: "0.1.0".into(),
        retention_ms: 93_600_000,
        newest: 1_700_000_000_000 + i as i64,
        bytes: (0..bytes).map(|b| (b * 7 + i) as u8).collect(),
    }
}

fn write(dir: &Path, records: &[Record]) {
    let mut writer = Writer::create(dir).unwrap();
    for r in records {
        writer.add(r).unwrap();
    }
    writer.finish().unwrap();
}

fn read_all(dir: &Path) -> Vec<Next> {
    let mut reader = Reader::open(dir).unwrap().unwrap();
    let mut out = Vec::new();
    loop {
        let next = reader.next_record();
        let end = matches!(next, Next::End(_));
        out.push(next);
        if end {
            return out;
        }
    }
}

#[test]
fn records_come_back_as_written_and_the_temporary_file_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Reader::open(dir.path()).unwrap().is_none(), "no snapshot yet");
    let records: Vec<Record> = (0..5).map(|i| record(i, i * 1000)).collect();
    write(dir.path(), &records);
    let read: Vec<Record> = read_all(dir.path())
        .into_iter()
        .filter_map(|n| match n {
            Next::Record(r) => Some(r),
            Next::End(None) => None,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(read, records);
    assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
}

#[test]
fn damage_costs_the_damaged_record_or_the_rest_never_a_wrong_record() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Record> = (0..3).map(|i| record(i, 500)).collect();
    write(dir.path(), &records);
    let path = dir.path().join(FILE_NAME);
    let pristine = std::fs::read(&path).unwrap();
    let record_len = (pristine.len() - MAGIC.len()) / 3;
    // (what, bytes, records read intact, damaged, ends with an error)
    let mut flipped = pristine.clone();
    flipped[MAGIC.len() + record_len + 100] ^= 0x40;
    let mut long = pristine.clone();
    long[MAGIC.len() + record_len..MAGIC.len() + record_len + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let cases: [(&str, Vec<u8>, usize, usize, bool); 3] = [
        ("a flipped bit in the second record", flipped, 2, 1, false),
        ("a cut file", pristine[..pristine.len() - 10].to_vec(), 2, 0, true),
        ("a length past the end", long, 1, 0, true),
    ];
    for (what, bytes, intact, damaged, error) in cases {
        std::fs::write(&path, bytes).unwrap();
        let read = read_all(dir.path());
        let got_intact = read.iter().filter(|n| matches!(n, Next::Record(_))).count();
        let got_damaged = read.iter().filter(|n| matches!(n, Next::Damaged(_))).count();
        assert_eq!((got_intact, got_damaged), (intact, damaged), "{what}: {read:?}");
        assert_eq!(
            matches!(read.last(), Some(Next::End(Some(_)))),
            error,
            "{what}: {read:?}"
        );
        for n in &read {
            if let Next::Record(r) = n {
                assert!(records.contains(r), "{what}: a record not written came back");
            }
        }
    }
    std::fs::write(&path, b"SPSNAP99rest").unwrap();
    assert!(matches!(
        Reader::open(dir.path()),
        Err(DurableError::Foreign { .. })
    ));
}
