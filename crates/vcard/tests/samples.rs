//! The real exports in ../shared/data/vcard, read in place.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward_vcard::{Contact, Typed, parse, parse_one};

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

fn typed(value: &str, types: &[&str], pref: bool, label: Option<&str>) -> Typed {
    Typed {
        value: value.to_string(),
        types: types.iter().map(|t| t.to_string()).collect(),
        pref,
        label: label.map(str::to_string),
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn iphone_3_0() {
    let cards = parse(IPHONE).unwrap();
    assert_eq!(cards.len(), 1);
    let c = &cards[0];
    assert_eq!(c.formatted_name, s("Mr. John Richter James Doe Sr."));
    assert_eq!(c.family_name, s("Doe"));
    assert_eq!(c.given_name, s("John"));
    assert_eq!(c.organization, s("IBM"));
    // ORG:IBM;Accounting: the first unit is the department.
    assert_eq!(c.department, s("Accounting"));
    assert_eq!(c.title, s("Money Counter"));
    assert_eq!(c.birthday, s("2012-06-06"));
    // item1.EMAIL;type=INTERNET;type=pref: pref is a flag, not a type; item1 has no label.
    assert_eq!(
        c.emails,
        vec![typed("john.doe@ibm.com", &["internet"], true, None)]
    );
    assert_eq!(
        c.phones,
        vec![
            typed("905-555-1234", &["cell", "voice"], true, None),
            typed("905-666-1234", &["home", "voice"], false, None),
            typed("905-777-1234", &["work", "voice"], false, None),
            typed("905-888-1234", &["home", "fax"], false, None),
            typed("905-999-1234", &["work", "fax"], false, None),
            typed("905-111-1234", &["pager"], false, None),
            // item2.TEL + item2.X-ABLabel:_$!<AssistantPhone>!$_
            typed("905-222-1234", &[], false, Some("AssistantPhone")),
        ]
    );
    assert_eq!(c.addresses.len(), 2);
    let home = &c.addresses[0];
    // The unescaped comma is a 3.0 list separator inside the street component.
    assert_eq!(home.street, s("Silicon Alley 5,"));
    assert_eq!(home.locality, s("New York"));
    assert_eq!(home.region, s("New York"));
    assert_eq!(home.postal_code, s("12345"));
    assert_eq!(home.country, s("United States of America"));
    assert_eq!(
        (home.types.as_slice(), home.pref),
        (&["home".to_string()][..], true)
    );
    let work = &c.addresses[1];
    assert_eq!(work.street, s("Street4\nBuilding 6\nFloor 8"));
    assert_eq!(work.region, None);
    assert_eq!(work.types, ["work"]);
    // `http\://` is an over-escaped colon.
    assert_eq!(c.urls, ["http://www.ibm.com"]);

    // The photo is 43,376 base64 characters folded over 580 lines ending CR CR LF.
    let photo = c.photo.as_ref().expect("photo");
    assert_eq!(photo.media_type, "image/jpeg");
    assert_eq!(photo.data.len(), 32_531);
    assert_eq!(
        &photo.data[..4],
        &[0xFF, 0xD8, 0xFF, 0xE0],
        "JPEG SOI + APP0"
    );
    assert_eq!(&photo.data[6..10], b"JFIF");
    assert_eq!(
        &photo.data[photo.data.len() - 2..],
        &[0xFF, 0xD9],
        "JPEG EOI: all of it decoded"
    );
}

#[test]
fn android_2_1() {
    let cards = parse(ANDROID).unwrap();
    assert_eq!(cards.len(), 6);

    // Cards 1 and 2: only an email with a bare 2.1 PREF.
    assert_eq!(
        cards[0].emails,
        vec![typed("john.doe@company.com", &[], true, None)]
    );
    assert_eq!(cards[0].formatted_name, None);
    assert_eq!(cards[1].emails[0].value, "jane.doe@company.com");

    // Card 3: quoted-printable UTF-8 (=C3=91 is Ñ, =20 a space), bare `CELL;PREF`.
    let c3 = &cards[2];
    assert_eq!(c3.family_name, s("Ñ Ñ Ñ Ñ "));
    assert_eq!(c3.formatted_name, s("Ñ Ñ Ñ Ñ Ñ "));
    assert_eq!(c3.phones, vec![typed("123456789", &["cell"], true, None)]);

    // Card 4: a soft line break (`=` at the end of the line) in the middle of the value.
    let c4 = &cards[3];
    let eleven = ["Ñ"; 11].join(" ");
    assert_eq!(c4.family_name.as_deref(), Some(eleven.as_str()));
    assert_eq!(c4.formatted_name.as_deref(), Some(eleven.as_str()));
    assert_eq!(
        c4.phones
            .iter()
            .map(|p| (p.value.as_str(), p.types.clone(), p.pref))
            .collect::<Vec<_>>(),
        vec![
            ("123456", vec!["cell".to_string()], true),
            ("234567", vec!["home".to_string()], false),
            ("3456789", vec!["cell".to_string()], false),
            ("45678901", vec!["home".to_string()], false),
        ]
    );
    // Two NOTEs, each over three soft-broken lines, joined with a line break.
    let note = "Ñ Ñ Ñ Ñ Ñ Ñ Ñ ÑÑ Ñ Ñ Ñ Ñ Ñ Ñ ÑÑ Ñ Ñ Ñ Ñ ";
    assert_eq!(c4.note, Some(format!("{note}\n{note}")));

    // Card 5: N with two components, `WORK;FAX`, a QP email, a 2.1 base64 photo.
    let c5 = &cards[4];
    assert_eq!(c5.family_name, s("Ñ Ñ "));
    assert_eq!(c5.given_name, s("Ñ Ñ Ñ "));
    assert_eq!(c5.phones[2], typed("123456", &["work", "fax"], false, None));
    assert_eq!(
        c5.emails[0],
        typed("bob@company.com", &["work"], true, None)
    );
    assert_eq!(c5.emails[1].value, "Ñ".repeat(14));
    assert_eq!(c5.organization, Some("Ñ".repeat(12)));
    assert_eq!(c5.urls, ["www.company.com", "http://www.company.com"]);
    let photo = c5.photo.as_ref().expect("photo");
    assert_eq!(
        photo.media_type, "image/jpeg",
        "from the bare 2.1 parameter JPEG"
    );
    assert_eq!(&photo.data[..4], &[0xFF, 0xD8, 0xFF, 0xE0]);
    assert_eq!(&photo.data[6..10], b"JFIF");
    // 1169 base64 characters: an abridged image whose dangling 6 bits are dropped.
    assert_eq!(photo.data.len(), 1169 * 3 / 4);

    // Card 6: the first of three ORGs (the second decodes to invalid UTF-8: ...=C3=91=80).
    let c6 = &cards[5];
    assert_eq!(c6.formatted_name, s("ÑÑÑÑ"));
    assert_eq!(c6.organization, Some("Ñ".repeat(44)));
    assert_eq!(c6.emails[0], typed("henry@company.com", &[], true, None));
}

#[test]
fn rfc6350_4_0() {
    let c: Contact = parse_one(RFC6350).unwrap();
    assert_eq!(c.formatted_name, s("Simon Perreault"));
    assert_eq!(c.family_name, s("Perreault"));
    assert_eq!(c.given_name, s("Simon"));
    assert_eq!(c.birthday, s("--02-03"), "BDAY:--0203 has no year");
    assert_eq!(c.organization, s("Viagenie"));
    assert_eq!(c.department, None);
    let adr = &c.addresses[0];
    assert_eq!(adr.extended, s("Suite D2-630"));
    assert_eq!(adr.street, s("2875 Laurier"));
    assert_eq!(adr.locality, s("Quebec"), "folded across two lines");
    assert_eq!(adr.region, s("QC"));
    assert_eq!(adr.postal_code, s("G1V 2M2"));
    assert_eq!(adr.country, s("Canada"));
    assert_eq!(adr.types, ["work"]);
    assert_eq!(
        c.phones,
        vec![
            // TYPE="work,voice";PREF=1, VALUE=uri: the tel: scheme is dropped.
            typed("+1-418-656-9254;ext=102", &["work", "voice"], true, None),
            typed(
                "+1-418-262-6501",
                &["work", "cell", "voice", "video", "text"],
                false,
                None
            ),
        ]
    );
    assert_eq!(
        c.emails,
        vec![typed("simon.perreault@viagenie.ca", &["work"], false, None)]
    );
    assert_eq!(c.urls, ["http://nomis80.org"]);
    assert_eq!(c.photo, None);
    assert_eq!(c.note, None);
}

#[test]
fn non_ascii_in_3_0_and_4_0() {
    let input = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Zoë Ørsted-Łukasiewicz 李小龍 👩‍💻\r\n\
                 N:Ørsted-Łukasiewicz;Zoë;;;\r\nORG:Société Générale\\, Paris\r\n\
                 NOTE:Première ligne\\nDeuxième ligne\\; fin\r\nEND:VCARD\r\n";
    let c = parse_one(input.as_bytes()).unwrap();
    assert_eq!(c.formatted_name, s("Zoë Ørsted-Łukasiewicz 李小龍 👩‍💻"));
    assert_eq!(c.family_name, s("Ørsted-Łukasiewicz"));
    assert_eq!(c.given_name, s("Zoë"));
    assert_eq!(c.organization, s("Société Générale, Paris"));
    assert_eq!(c.note, s("Première ligne\nDeuxième ligne; fin"));

    // Folded in the middle of a multi-byte character (writers should not, some do).
    let folded = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:J\xc3\r\n \xb6rg\r\nEND:VCARD\r\n";
    assert_eq!(parse_one(folded).unwrap().formatted_name, s("Jörg"));
}

#[test]
fn type_parameter_spellings() {
    let input = "BEGIN:VCARD\nVERSION:3.0\nFN:T\n\
                 TEL;TYPE=CELL:1\nTEL;TYPE=cell,voice:2\nTEL;type=WORK;type=pref:3\n\
                 TEL;TYPE=\"home,fax\":4\nTEL;CELL;VOICE:5\nTEL:tel:+44-6\n\
                 item7.TEL;TYPE=x-custom:7\nitem7.X-ABLabel:Boat\nEND:VCARD\n";
    let c = parse_one(input.as_bytes()).unwrap();
    let got: Vec<_> = c
        .phones
        .iter()
        .map(|p| {
            (
                p.value.as_str(),
                p.types.join(","),
                p.pref,
                p.label.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("1", "cell".to_string(), false, None),
            ("2", "cell,voice".to_string(), false, None),
            ("3", "work".to_string(), true, None),
            ("4", "home,fax".to_string(), false, None),
            ("5", "cell,voice".to_string(), false, None),
            ("+44-6", String::new(), false, None),
            ("7", "x-custom".to_string(), false, Some("Boat")),
        ]
    );
}

#[test]
fn quoted_printable_variants() {
    // Bare QUOTED-PRINTABLE parameter, ISO-8859-1 charset, soft break.
    let input = b"BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=ISO-8859-1;QUOTED-PRINTABLE:M=FCller;J=\r\n=F6rg\r\n\
                  NOTE;ENCODING=QUOTED-PRINTABLE;CHARSET=UTF-8:caf=C3=A9=0D=0Abar\r\nEND:VCARD\r\n";
    let c = parse_one(input).unwrap();
    assert_eq!(c.family_name, s("Müller"));
    assert_eq!(c.given_name, s("Jörg"));
    assert_eq!(c.note, s("café\nbar"), "CRLF inside a value becomes \\n");
}

#[test]
fn photos_in_every_spelling() {
    const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    for (spelling, media_type) in [
        (format!("PHOTO;ENCODING=b;TYPE=PNG:{PNG_B64}"), "image/png"),
        (
            format!("PHOTO;ENCODING=BASE64;TYPE=image/png:{PNG_B64}"),
            "image/png",
        ),
        (format!("PHOTO;BASE64:{PNG_B64}"), "image/png"),
        (
            format!("PHOTO:data:image/png;base64,{PNG_B64}"),
            "image/png",
        ),
        (
            format!("PHOTO;VALUE=uri:data:image/png;base64,{PNG_B64}"),
            "image/png",
        ),
    ] {
        let input = format!("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:P\r\n{spelling}\r\nEND:VCARD\r\n");
        let c = parse_one(input.as_bytes()).unwrap_or_else(|e| panic!("{spelling}: {e}"));
        let photo = c.photo.unwrap_or_else(|| panic!("{spelling}: no photo"));
        assert_eq!(photo.media_type, media_type, "{spelling}");
        assert_eq!(&photo.data[..8], b"\x89PNG\r\n\x1a\n", "{spelling}");
    }
    // A photo by reference is not fetched and not kept.
    let input =
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:P\r\nPHOTO:http://example.com/p.jpg\r\nEND:VCARD\r\n";
    assert_eq!(parse_one(input.as_bytes()).unwrap().photo, None);
}

#[test]
fn vcard_2_1_base64_lines_need_not_be_indented() {
    // Nokia-style: base64 lines at column 0, ended by a blank line.
    let input = "BEGIN:VCARD\r\nVERSION:2.1\r\nN:Virtanen;Matti\r\n\
                 PHOTO;ENCODING=BASE64;TYPE=PNG:iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ\r\n\
                 AAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\r\n\r\n\
                 TEL;CELL:+358 40 123 4567\r\nEND:VCARD\r\n";
    let c = parse_one(input.as_bytes()).unwrap();
    let photo = c.photo.unwrap();
    assert_eq!(photo.media_type, "image/png");
    assert_eq!(photo.data.len(), 70);
    assert_eq!(&photo.data[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        &photo.data[photo.data.len() - 8..],
        b"IEND\xaeB`\x82",
        "all of it decoded"
    );
    assert_eq!(c.phones[0].value, "+358 40 123 4567");
}

#[test]
fn parse_located_names_where_each_card_begins() {
    let located = steward_vcard::parse_located(ANDROID).unwrap();
    let lines: Vec<(usize, usize)> = located.iter().map(|l| (l.card, l.line)).collect();
    assert_eq!(lines, [(1, 1), (2, 6), (3, 11), (4, 18), (5, 36), (6, 71)]);
    let contacts: Vec<Contact> = located.into_iter().map(|l| l.contact).collect();
    assert_eq!(contacts, parse(ANDROID).unwrap());
    // Later ORG properties never lend a unit to the first one's name.
    let c = parse_one(
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\nORG:Acme\r\nORG:Other;Sales\r\nEND:VCARD\r\n",
    )
    .unwrap();
    assert_eq!((c.organization, c.department), (s("Acme"), None));
}
