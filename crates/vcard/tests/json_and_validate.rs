//! The JSON shape of Contact (device sync) and Contact::validate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward_vcard::{Contact, Limits, Photo, Typed, Version, parse, parse_one, to_vcard};

const IPHONE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/vcard/iphone-3.0.vcf"
));
const ANDROID: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/vcard/android-2.1.vcf"
));
const RFC6350: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/vcard/rfc6350-4.0.vcf"
));

#[test]
fn json_round_trip_with_base64_photo() {
    let contact = parse_one(IPHONE).unwrap();
    let json = serde_json::to_value(&contact).unwrap();
    let data = json["photo"]["data"]
        .as_str()
        .expect("photo data is a base64 string");
    assert!(
        data.starts_with("/9j/4AAQSkZJRgABAQAAAQABAAD/"),
        "{}",
        &data[..40]
    );
    assert_eq!(json["photo"]["media_type"], "image/jpeg");
    assert_eq!(json["phones"][6]["label"], "AssistantPhone");
    assert_eq!(json["phones"][0]["pref"], true);
    assert!(
        json["phones"][1].get("pref").is_none(),
        "false flags are left out"
    );
    assert!(json.get("note").is_none(), "absent fields are left out");
    let back: Contact = serde_json::from_value(json).unwrap();
    assert_eq!(back, contact);
}

#[test]
fn json_sync_input() {
    let json = r#"{
        "formatted_name": "Jörg Müller",
        "given_name": "Jörg",
        "phones": [{"value": "+49 30 1234567", "types": ["cell"], "pref": true}],
        "emails": [{"value": "j@example.de"}],
        "photo": {"media_type": "image/png", "data": "iVBORw0KGgo="}
    }"#;
    let contact: Contact = serde_json::from_str(json).unwrap();
    assert_eq!(contact.phones[0].types, ["cell"]);
    assert_eq!(contact.photo.as_ref().unwrap().data, b"\x89PNG\r\n\x1a\n");
    contact.validate(&Limits::default()).unwrap();
    // And it goes out as vCard and comes back the same.
    for version in [Version::V3, Version::V4] {
        assert_eq!(
            parse_one(to_vcard(&contact, version).as_bytes()).unwrap(),
            contact
        );
    }
}

#[test]
fn json_refuses_unknown_fields_and_bad_photo_data() {
    for (json, needle) in [
        (r#"{"formatted_name": "A", "nickname": "B"}"#, "nickname"),
        (r#"{"phones": [{"value": "1", "kind": "cell"}]}"#, "kind"),
        (r#"{"addresses": [{"street": "x", "city": "y"}]}"#, "city"),
        (
            r#"{"photo": {"media_type": "image/png", "data": "AA==", "url": "x"}}"#,
            "url",
        ),
        (
            r#"{"photo": {"media_type": "image/png", "data": "not base64!"}}"#,
            "not base64",
        ),
    ] {
        let e = serde_json::from_str::<Contact>(json)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{json}: {e}");
    }
}

#[test]
fn every_sample_contact_is_valid() {
    for bytes in [IPHONE, ANDROID, RFC6350] {
        for contact in parse(bytes).unwrap() {
            contact
                .validate(&Limits::default())
                .unwrap_or_else(|e| panic!("{e}: {contact:?}"));
        }
    }
}

fn named(name: &str) -> Contact {
    Contact {
        formatted_name: Some(name.to_string()),
        ..Contact::default()
    }
}

fn problems(contact: &Contact, limits: &Limits) -> Vec<(String, String)> {
    match contact.validate(limits) {
        Ok(()) => panic!("accepted: {:?}", contact.formatted_name),
        Err(e) => e
            .problems
            .into_iter()
            .map(|p| (p.field, p.message))
            .collect(),
    }
}

#[test]
fn empty_contacts_are_refused() {
    let empty_ones = [
        Contact::default(),
        Contact {
            note: Some("only a note".into()),
            urls: vec!["https://example.com".into()],
            ..Contact::default()
        },
    ];
    for contact in empty_ones {
        let p = problems(&contact, &Limits::default());
        assert_eq!(p[0].0, "contact");
        assert!(p[0].1.contains("is empty"), "{p:?}");
    }
    let e = Contact::default().validate(&Limits::default()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid contact: contact: is empty"),
        "{e}"
    );
}

#[test]
fn overlong_and_blank_fields_are_named() {
    let limits = Limits::default();
    let mut c = named(&"x".repeat(limits.max_text_bytes + 1));
    c.note = Some("n".repeat(limits.max_note_bytes + 1));
    c.phones = vec![
        Typed {
            value: "1".repeat(limits.max_text_bytes + 1),
            ..Typed::default()
        },
        Typed {
            value: "   ".into(),
            types: vec!["cell phone".into(), "pref".into()],
            ..Typed::default()
        },
    ];
    c.given_name = Some(String::new());
    c.title = Some("CEO\u{0}".into());
    c.birthday = Some("19850412".into());
    let p = problems(&c, &limits);
    let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "formatted_name",
            "given_name",
            "title",
            "note",
            "birthday",
            "phones[0].value",
            "phones[1].value",
            "phones[1].types[0]",
            "phones[1].types[1]",
        ]
    );
    assert!(
        p[0].1.contains("1025 bytes, over the limit of 1024"),
        "{p:?}"
    );
    assert!(p[1].1.contains("empty"), "{p:?}");
    assert!(p[2].1.contains("control character"), "{p:?}");
    assert!(p[4].1.contains("\"1985-04-12\""), "{p:?}");
    assert!(p[8].1.contains("\"pref\": true"), "{p:?}");

    let too_many = Contact {
        emails: vec![
            Typed {
                value: "a@b.c".into(),
                ..Typed::default()
            };
            limits.max_entries + 1
        ],
        ..Contact::default()
    };
    let p = problems(&too_many, &limits);
    assert_eq!(p[0].0, "emails");
    assert!(p[0].1.contains("51 entries, over the limit of 50"), "{p:?}");
}

#[test]
fn photo_size_limit_is_configurable() {
    let contact = parse_one(IPHONE).unwrap();
    let size = contact.photo.as_ref().unwrap().data.len();
    assert_eq!(size, 32_531);
    let tight = Limits {
        max_photo_bytes: 32_000,
        ..Limits::default()
    };
    let p = problems(&contact, &tight);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0, "photo.data");
    assert!(
        p[0].1
            .contains("32531 bytes, over the limit of 32000 bytes"),
        "{p:?}"
    );
    contact
        .validate(&Limits {
            max_photo_bytes: size,
            ..Limits::default()
        })
        .unwrap();

    let mut odd = named("A");
    odd.photo = Some(Photo {
        media_type: "text/html".into(),
        data: Vec::new(),
    });
    let p = problems(&odd, &Limits::default());
    let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["photo.data", "photo.media_type"]);
}

#[test]
fn text_birthdays_and_multiline_fields_are_allowed_where_they_belong() {
    let mut c = named("A");
    c.birthday = Some("circa 1800".into());
    c.note = Some("two\nlines".into());
    c.validate(&Limits::default()).unwrap();
    c.formatted_name = Some("two\nlines".into());
    let p = problems(&c, &Limits::default());
    assert_eq!(p[0].0, "formatted_name");
}

/// Found by the `vcard` fuzz target: a tab inside a URL passed validation, and writing
/// the contact out (URIs keep no control characters) lost it.
#[test]
fn a_url_with_a_tab_is_refused_and_text_with_one_round_trips() {
    let mut contact = named("Simon Perreault");
    contact.urls = vec!["https://example.com/a\tb".into()];
    let found = problems(&contact, &Limits::default());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "urls[0]");
    assert!(found[0].1.contains("control character"), "{found:?}");
    // In a text value a tab is kept, and survives writing and reading.
    let mut contact = named("Simon\tPerreault");
    contact.note = Some("a\tb".into());
    assert!(contact.validate(&Limits::default()).is_ok());
    for version in [steward_vcard::Version::V3, steward_vcard::Version::V4] {
        let text = steward_vcard::to_vcard(&contact, version);
        assert_eq!(steward_vcard::parse_one(text.as_bytes()).unwrap(), contact);
    }
}

/// Found by the `vcard` fuzz target: a photo typed `image/=jpeg` passed validation and
/// came back as `application/octet-stream` once written.
#[test]
fn a_photo_type_that_is_not_a_media_type_is_refused() {
    for bad in ["image/=jpeg", "image/", "image/png/x", "image/jp eg"] {
        let mut contact = named("Jörg Müller");
        contact.photo = Some(steward_vcard::Photo {
            media_type: bad.into(),
            data: vec![0xFF, 0xD8, 0xFF, 0xE0],
        });
        let found = problems(&contact, &Limits::default());
        assert_eq!(found[0].0, "photo.media_type", "{bad}: {found:?}");
    }
}
