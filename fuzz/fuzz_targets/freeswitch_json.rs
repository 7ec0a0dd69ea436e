//! FreeSWITCH `mod_json_cdr` records. Properties: reading is the same whatever the read
//! buffer's size; every error and record names a line of the input; a record's times
//! and durations are not negative.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_cdr::freeswitch_json;
use steward_fuzz::{Trickle, same_and_located, step};

fuzz_target!(|data: &[u8]| {
    let whole: Vec<_> = freeswitch_json(data).collect();
    let trickled: Vec<_> = freeswitch_json(Trickle::new(data, step(data))).collect();
    same_and_located(data, &whole, &trickled);
    for r in whole.iter().flatten() {
        assert!(r.duration_secs >= 0 && r.billsec >= 0, "{r:?}");
        assert!(r.data_bytes.is_none_or(|b| b >= 0), "{r:?}");
    }
});
