//! parse → to_vcard(V4 | V3) → parse gives the same Contact; the output is well formed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward_vcard::{Address, Contact, Photo, Typed, Version, parse, parse_one, to_vcard};

const SAMPLES: [(&str, &[u8]); 3] = [
    (
        "iphone-3.0.vcf",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/vcard/iphone-3.0.vcf"
        )),
    ),
    (
        "android-2.1.vcf",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/vcard/android-2.1.vcf"
        )),
    ),
    (
        "rfc6350-4.0.vcf",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/vcard/rfc6350-4.0.vcf"
        )),
    ),
];

/// Checks the written text's framing: CRLF only, ≤ 75 octets per line, right VERSION.
fn assert_well_formed(text: &str, version: Version, what: &str) {
    assert!(text.starts_with("BEGIN:VCARD\r\n"), "{what}");
    assert!(text.ends_with("END:VCARD\r\n"), "{what}");
    let want = match version {
        Version::V3 => "\r\nVERSION:3.0\r\n",
        Version::V4 => "\r\nVERSION:4.0\r\n",
    };
    assert!(text.contains(want), "{what}: no {want:?}");
    let body = text.strip_suffix("\r\n").unwrap();
    for line in body.split("\r\n") {
        assert!(
            !line.contains('\n') && !line.contains('\r'),
            "{what}: bare line break in {line:?}"
        );
        assert!(line.len() <= 75, "{what}: {} octets: {line:?}", line.len());
    }
}

fn round_trip(contact: &Contact, what: &str) {
    for version in [Version::V4, Version::V3] {
        let text = to_vcard(contact, version);
        assert_well_formed(&text, version, what);
        let back = parse_one(text.as_bytes())
            .unwrap_or_else(|e| panic!("{what} {version:?}: {e}\n{text}"));
        assert_eq!(&back, contact, "{what} {version:?}:\n{text}");
        // Writing what was read back gives the same text.
        assert_eq!(
            to_vcard(&back, version),
            text,
            "{what} {version:?}: not stable"
        );
    }
}

#[test]
fn every_sample_card_round_trips_through_v4_and_v3() {
    let mut cards = 0;
    for (name, bytes) in SAMPLES {
        for (i, contact) in parse(bytes).unwrap().iter().enumerate() {
            round_trip(contact, &format!("{name} card {}", i + 1));
            cards += 1;
        }
    }
    assert_eq!(cards, 8);
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// A contact with everything awkward at once.
fn awkward() -> Contact {
    Contact {
        uid: s("urn:uuid:0e7a1b54-2f8c-4d7a-9d0e-3b2f1c5d6e7f;x=a,b"),
        formatted_name: s("Dr. Zoë O'Brien-Łukasiewicz, PhD; 李小龍 👩‍💻"),
        family_name: s("O'Brien-Łukasiewicz"),
        given_name: s("Zoë"),
        organization: s("Acme; Widgets, Ltd \\ Co"),
        department: s("Télécoms; R&D, Paris"),
        title: s("Head of Telephony, EMEA"),
        emails: vec![
            Typed {
                value: "zoe@example.com".into(),
                types: vec!["work".into(), "internet".into()],
                pref: true,
                label: None,
            },
            Typed {
                value: "zoe+private@example.org".into(),
                types: vec![],
                pref: false,
                label: s("Très privé, ne pas partager"),
            },
        ],
        phones: vec![
            Typed {
                value: "+44 20 7946 0000".into(),
                types: vec!["cell".into(), "voice".into()],
                pref: true,
                label: None,
            },
            Typed {
                value: "+1-418-656-9254;ext=102".into(),
                types: vec!["work".into()],
                pref: false,
                label: s("Desk; ext."),
            },
        ],
        addresses: vec![Address {
            po_box: None,
            extended: s("Flat 3"),
            street: s("1 Rue de l'Église\nBâtiment B, 2e étage"),
            locality: s("Besançon"),
            region: None,
            postal_code: s("25000"),
            country: s("France"),
            types: vec!["home".into()],
            pref: true,
            label: s("Maison"),
        }],
        note: s(&format!(
            "Line one, with comma; and semicolon\\backslash\nLine two: {}",
            "ü€𝄞 long ".repeat(30)
        )),
        birthday: s("--02-29"),
        photo: Some(Photo {
            media_type: "image/png".into(),
            data: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".repeat(20),
        }),
        urls: vec![
            "https://example.com/a,b;c?x=1&y=2#frag".into(),
            "http://nomis80.org".into(),
        ],
    }
}

#[test]
fn an_awkward_contact_round_trips() {
    round_trip(&awkward(), "awkward");
}

#[test]
fn birthdays_round_trip_in_every_form() {
    for birthday in [
        "1985-04-12",
        "1985-04",
        "1985",
        "--04-12",
        "--04",
        "---12",
        "1953-10-15T23:10:00Z",
        "1996-10-22T14:00+01:30",
        "circa 1800",
    ] {
        let contact = Contact {
            formatted_name: s("B"),
            birthday: s(birthday),
            ..Contact::default()
        };
        round_trip(&contact, birthday);
    }
}

#[test]
fn minimal_and_empty_contacts_round_trip() {
    round_trip(&Contact::default(), "empty");
    round_trip(
        &Contact {
            emails: vec![Typed {
                value: "a@b.c".into(),
                ..Typed::default()
            }],
            ..Contact::default()
        },
        "email only",
    );
}

#[test]
fn v4_and_v3_spell_things_their_own_way() {
    let contact = awkward();
    let v4 = to_vcard(&contact, Version::V4).replace("\r\n ", "");
    assert!(
        v4.contains("\r\nTEL;TYPE=cell,voice;PREF=1:+44 20 7946 0000\r\n"),
        "{v4}"
    );
    assert!(
        v4.contains(
            "\r\nitem1.TEL;TYPE=work:+1-418-656-9254\\;ext=102\r\nitem1.X-ABLabel:Desk\\; ext.\r\n"
        ),
        "{v4}"
    );
    assert!(v4.contains("\r\nBDAY:--0229\r\n"), "{v4}");
    assert!(
        v4.contains("\r\nPHOTO:data:image/png;base64,iVBORw0KGgo"),
        "{v4}"
    );
    assert!(
        v4.contains("\r\nORG:Acme\\; Widgets\\, Ltd \\\\ Co;Télécoms\\; R&D\\, Paris\r\n"),
        "{v4}"
    );
    assert!(
        v4.contains("\r\nURL:https://example.com/a,b;c?x=1&y=2#frag\r\n"),
        "{v4}"
    );

    let v3 = to_vcard(&contact, Version::V3).replace("\r\n ", "");
    assert!(
        v3.contains("\r\nTEL;TYPE=CELL,VOICE,PREF:+44 20 7946 0000\r\n"),
        "{v3}"
    );
    assert!(v3.contains("\r\nBDAY:--02-29\r\n"), "{v3}");
    assert!(
        v3.contains("\r\nPHOTO;ENCODING=b;TYPE=PNG:iVBORw0KGgo"),
        "{v3}"
    );
    assert!(v3.contains("\r\nN:O'Brien-Łukasiewicz;Zoë;;;\r\n"), "{v3}");
    assert!(
        v3.contains("\r\nNOTE:Line one\\, with comma\\; and semicolon\\\\backslash\\nLine two:"),
        "{v3}"
    );

    // N is required in 3.0, optional in 4.0; FN is required in both.
    let bare = Contact {
        organization: s("Acme"),
        ..Contact::default()
    };
    assert!(to_vcard(&bare, Version::V3).contains("\r\nFN:\r\nN:;;;;\r\n"));
    let v4 = to_vcard(&bare, Version::V4);
    assert!(v4.contains("\r\nFN:\r\n") && !v4.contains("\r\nN:"), "{v4}");
}

#[test]
fn a_directory_export_of_many_cards_parses_back() {
    let directory: Vec<Contact> = (0..25)
        .map(|i| Contact {
            uid: Some(format!("emp-{i}")),
            formatted_name: Some(format!("Employee {i} Ñúñez")),
            phones: vec![Typed {
                value: format!("+44 20 7946 {i:04}"),
                types: vec!["work".into()],
                ..Typed::default()
            }],
            ..Contact::default()
        })
        .collect();
    for version in [Version::V4, Version::V3] {
        let text: String = directory.iter().map(|c| to_vcard(c, version)).collect();
        assert_eq!(parse(text.as_bytes()).unwrap(), directory, "{version:?}");
    }
}

#[test]
fn a_department_without_an_organisation_round_trips() {
    let contact = Contact {
        formatted_name: s("Helpdesk"),
        department: s("IT Support"),
        ..Contact::default()
    };
    round_trip(&contact, "department only");
    assert!(to_vcard(&contact, Version::V4).contains("\r\nORG:;IT Support\r\n"));
    let named = Contact {
        organization: s("Acme"),
        ..contact
    };
    round_trip(&named, "organisation and department");
    assert!(to_vcard(&named, Version::V3).contains("\r\nORG:Acme;IT Support\r\n"));
}
