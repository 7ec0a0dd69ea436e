//! Asterisk `cdr_csv` rows. Properties: reading is the same whatever the read buffer's
//! size; every error and record names a line of the input; the records read, written
//! back with `write_asterisk_csv` and read again, are the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_cdr::{CallRecord, asterisk_csv, write_asterisk_csv};
use steward_fuzz::{Trickle, same_and_located, step};

fn comparable(r: &CallRecord) -> CallRecord {
    CallRecord {
        line: 0,
        raw_hash: [0; 32],
        occurrence: 0,
        ..r.clone()
    }
}

fuzz_target!(|data: &[u8]| {
    let whole: Vec<_> = asterisk_csv(data).collect();
    let trickled: Vec<_> = asterisk_csv(Trickle::new(data, step(data))).collect();
    same_and_located(data, &whole, &trickled);

    let read: Vec<CallRecord> = whole.into_iter().filter_map(Result::ok).collect();
    let mut written = Vec::new();
    write_asterisk_csv(&read, &mut written).expect("writing to memory");
    let again: Vec<CallRecord> = asterisk_csv(&written[..])
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("a written row does not read back: {e}"));
    assert_eq!(
        read.len(),
        again.len(),
        "rows lost or gained in the round trip"
    );
    for (a, b) in read.iter().zip(&again) {
        assert_eq!(
            comparable(a),
            comparable(b),
            "a record changed in the round trip"
        );
    }
});
