//! vCard 2.1/3.0/4.0. Properties: an error names a line of the input; every contact
//! that passes validation (what Steward stores), written as vCard 4.0 and as 3.0 and
//! read again, is the same contact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_vcard::{Limits, Version, parse_located, parse_one, to_vcard};

/// Lines as the reader counts them: split at LF, or at CR in a file with no LF at all
/// (classic Mac OS line ends).
fn card_lines(data: &[u8]) -> usize {
    let sep = if data.contains(&b'\n') { b'\n' } else { b'\r' };
    data.iter().filter(|b| **b == sep).count() + 1
}

fuzz_target!(|data: &[u8]| {
    match parse_located(data) {
        Ok(cards) => {
            for located in cards {
                let last = card_lines(data);
                assert!(
                    (1..=last).contains(&located.line),
                    "card at line {}",
                    located.line
                );
                if located.contact.validate(&Limits::default()).is_err() {
                    continue;
                }
                for version in [Version::V4, Version::V3] {
                    let text = to_vcard(&located.contact, version);
                    let again = parse_one(text.as_bytes()).unwrap_or_else(|e| {
                        panic!("written as {version:?}, not read back: {e}\n{text}")
                    });
                    assert_eq!(located.contact, again, "{version:?} round trip:\n{text}");
                }
            }
        }
        Err(e) => {
            let last = card_lines(data);
            if let Some(line) = e.line() {
                assert!((1..=last).contains(&line), "line {line} of {last}: {e}");
            }
            assert!(!e.to_string().is_empty());
        }
    }
});
