//! FreeSWITCH `mod_json_cdr` records. Properties: reading is the same whatever the read
//! buffer's size; every error and record names a line of the input; a record's times
//! and durations are not negative.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_cdr::freeswitch_json;
use steward_fuzz::{Trickle, lines, step};

fuzz_target!(|data: &[u8]| {
    let whole: Vec<_> = freeswitch_json(data).collect();
    let trickled: Vec<_> = freeswitch_json(Trickle::new(data, step(data))).collect();
    assert_eq!(whole, trickled, "the read buffer's size changed the result");

    let last = lines(data);
    for item in &whole {
        let line = match item {
            Ok(r) => r.line,
            Err(e) => e.line,
        };
        assert!(
            (1..=last).contains(&line),
            "line {line} of {last}: {item:?}"
        );
        if let Ok(r) = item {
            assert!(r.duration_secs >= 0 && r.billsec >= 0, "{r:?}");
            assert!(r.data_bytes.is_none_or(|b| b >= 0), "{r:?}");
        }
    }
});
