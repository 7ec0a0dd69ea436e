//! Phone-number normalisation (E.164). Properties: a number accepted is `+` and at most
//! 15 digits (E.164's maximum) from an input without control characters; normalising it
//! again, with any default region, gives it back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_crypto::normalize::phone;

const REGIONS: [&str; 8] = ["GB", "US", "DE", "FR", "IN", "SG", "gb", "ZZ"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let region = REGIONS[usize::from(pick) % REGIONS.len()];
    let Ok(e164) = phone(raw, region) else {
        return;
    };
    let digits = &e164[1..];
    assert!(e164.starts_with('+'), "{raw:?} -> {e164:?}");
    assert!(
        digits.bytes().all(|b| b.is_ascii_digit()),
        "{raw:?} -> {e164:?}"
    );
    assert!((3..=15).contains(&digits.len()), "{raw:?} -> {e164:?}");
    assert!(
        !raw.trim().chars().any(char::is_control),
        "{raw:?} -> {e164:?}"
    );
    for other in ["GB", "US", "SG"] {
        assert_eq!(
            phone(&e164, other).as_deref(),
            Ok(&e164[..]),
            "{raw:?} -> {e164:?}"
        );
    }
});
