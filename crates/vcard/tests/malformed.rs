//! Refused inputs: each error names the problem, the card and the line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward_vcard::{VcardError, parse, parse_one};

const IPHONE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/vcard/iphone-3.0.vcf"
));
const ANDROID: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/vcard/android-2.1.vcf"
));

fn err(input: &[u8]) -> VcardError {
    match parse(input) {
        Ok(cards) => panic!("accepted: {cards:?}"),
        Err(e) => e,
    }
}

fn assert_message(e: &VcardError, parts: &[&str]) {
    let msg = e.to_string();
    for part in parts {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
}

#[test]
fn no_begin() {
    let e = err(b"VERSION:3.0\r\nFN:Nobody\r\nEND:VCARD\r\n");
    assert_eq!(
        e,
        VcardError::ExpectedBegin {
            line: 1,
            found: "VERSION:3.0".into()
        }
    );
    assert_message(&e, &["line 1", "expected BEGIN:VCARD", "VERSION:3.0"]);
    // Blank lines before the first card are fine; text between cards is not.
    let e = err(b"\r\n\r\nBEGIN:VCARD\r\nFN:a\r\nEND:VCARD\r\nFN:stray\r\n");
    assert_eq!(e.line(), Some(6));
    assert_message(&e, &["line 6", "expected BEGIN:VCARD", "FN:stray"]);
}

#[test]
fn no_end() {
    let e = err(b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Half\r\n");
    assert_eq!(
        e,
        VcardError::MissingEnd {
            card: 1,
            begin_line: 1,
            line: 3
        }
    );
    assert_message(
        &e,
        &[
            "card 1",
            "line 1",
            "line 3",
            "without END:VCARD",
            "truncated",
        ],
    );
    let e = err(b"BEGIN:VCARD\r\nFN:a\r\nEND:VCARD\r\nEND:VCARD\r\n");
    assert_eq!(e, VcardError::UnmatchedEnd { line: 4 });
    assert_message(&e, &["line 4", "END:VCARD without a matching BEGIN:VCARD"]);
}

#[test]
fn garbage() {
    let e = err(b"\x00\xff\xfe garbage \x01\x02 not a vcard");
    assert_eq!(e.line(), Some(1));
    assert_message(&e, &["line 1", "expected BEGIN:VCARD"]);

    let e = err(b"<html><body>404</body></html>\n");
    assert_message(&e, &["line 1", "expected BEGIN:VCARD", "<html>"]);

    // Garbage inside the second card.
    let e = err(b"BEGIN:VCARD\nFN:a\nEND:VCARD\nBEGIN:VCARD\nVERSION:3.0\nthis is not a property\nEND:VCARD\n");
    assert_eq!(e.card(), Some(2));
    assert_eq!(e.line(), Some(6));
    assert_message(
        &e,
        &[
            "card 2",
            "line 6",
            "not a vCard content line",
            "this is not a property",
        ],
    );

    for (input, line) in [
        (&b"BEGIN:VCARD\nFN x:y\nEND:VCARD\n"[..], 2),
        (b"BEGIN:VCARD\nFN:x\n:no name\nEND:VCARD\n", 3),
        (b"BEGIN:VCARD\nFN:x\nTEL;TYPE=CELL\nEND:VCARD\n", 3),
    ] {
        let e = err(input);
        assert!(matches!(e, VcardError::Malformed { card: 1, .. }), "{e}");
        assert_eq!(e.line(), Some(line), "{e}");
    }
}

#[test]
fn empty_input() {
    for input in [&b""[..], b"\r\n\r\n", b"\xEF\xBB\xBF"] {
        assert_eq!(err(input), VcardError::Empty);
    }
    assert_message(&VcardError::Empty, &["no vCard found", "empty"]);
}

#[test]
fn truncated_card() {
    // The iPhone export cut off in the middle of its photo.
    let cut = &IPHONE[..IPHONE.len() / 2];
    let last_line = cut.split(|b| *b == b'\n').count();
    let e = err(cut);
    assert_eq!(
        e,
        VcardError::MissingEnd {
            card: 1,
            begin_line: 1,
            line: last_line
        }
    );

    // The Android export with its third card's END:VCARD removed: the fourth BEGIN shows it.
    let text = String::from_utf8(ANDROID.to_vec()).unwrap();
    let third_end = text.match_indices("END:VCARD\r\n").nth(2).unwrap().0;
    let broken = format!(
        "{}{}",
        &text[..third_end],
        &text[third_end + "END:VCARD\r\n".len()..]
    );
    let e = err(broken.as_bytes());
    assert_eq!(
        e,
        VcardError::NestedBegin {
            card: 3,
            begin_line: 11,
            line: 17
        }
    );
    assert_message(
        &e,
        &[
            "card 3",
            "line 11",
            "line 17",
            "before END:VCARD",
            "truncated",
        ],
    );
}

#[test]
fn bad_base64_photo() {
    let card = |photo: &str| {
        format!("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:P\r\n{photo}\r\nNOTE:after\r\nEND:VCARD\r\n")
    };
    for (photo, detail) in [
        ("PHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQ!!!!SkZJRg", "'!'"),
        ("PHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQ\r\n SkZJ*Rg", "'*'"),
        ("PHOTO;ENCODING=b;TYPE=JPEG:/9j/==4AAQSkZJRg", "'=' inside"),
        ("PHOTO;ENCODING=BASE64;JPEG:/9j/4AAQ===", "padding"),
        ("PHOTO:data:image/jpeg;base64,/9j/4A%%QSkZJRg", "'%'"),
    ] {
        let e = err(card(photo).as_bytes());
        assert_eq!(e.card(), Some(1), "{photo}: {e}");
        assert_eq!(e.line(), Some(4), "{photo}: {e}");
        assert!(
            matches!(e, VcardError::InvalidBase64 { .. }),
            "{photo}: {e}"
        );
        assert_message(&e, &["card 1", "line 4", "PHOTO", "invalid base64", detail]);
    }

    // The line is the photo's first line, in the second card, after a folded property.
    let input = "BEGIN:VCARD\r\nFN:a\r\nEND:VCARD\r\nBEGIN:VCARD\r\nNOTE:one\r\n two\r\n\
                 PHOTO:data:image/png;base64,iVBO\r\n Rw0K#\r\nEND:VCARD\r\n";
    let e = err(input.as_bytes());
    assert_eq!((e.card(), e.line()), (Some(2), Some(7)), "{e}");
}

#[test]
fn two_cards_to_parse_one() {
    let two = b"BEGIN:VCARD\r\nFN:One\r\nEND:VCARD\r\n\r\nBEGIN:VCARD\r\nFN:Two\r\nEND:VCARD\r\n";
    let e = parse_one(two).unwrap_err();
    assert_eq!(
        e,
        VcardError::NotOneCard {
            found: 2,
            second_line: 5
        }
    );
    assert_message(&e, &["exactly one vCard", "found 2", "line 5"]);
    let e = parse_one(ANDROID).unwrap_err();
    assert_message(&e, &["found 6", "line 6"]);
    assert!(parse_one(IPHONE).is_ok());
    assert_eq!(parse_one(b"").unwrap_err(), VcardError::Empty);
}

#[test]
fn other_refusals_name_card_and_line() {
    let e = err(b"BEGIN:VCARD\r\nVERSION:5.0\r\nFN:x\r\nEND:VCARD\r\n");
    assert_eq!((e.card(), e.line()), (Some(1), Some(2)));
    assert_message(&e, &["unsupported VERSION", "5.0"]);

    let e = err(b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:M\xfcller\r\nEND:VCARD\r\n");
    assert_eq!((e.card(), e.line()), (Some(1), Some(3)));
    assert_message(&e, &["FN", "not valid UTF-8"]);

    let e = err(b"BEGIN:VCARD\r\nFN:x\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\nEND:VCARD\r\n");
    assert_eq!((e.card(), e.line()), (Some(1), Some(3)));
    assert_message(&e, &["BEGIN:VCALENDAR", "nested"]);
}
