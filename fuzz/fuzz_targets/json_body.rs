//! The API's JSON bodies (`steward_wire::parse`, which every route's body goes through),
//! on a body with the shapes the API uses. Properties: whatever serde reads, `parse`
//! reads the same; what `parse` reads, written and read again, is the same; a refusal
//! says what kind it is and names a real field or none, never an unknown path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    name: String,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    flag: bool,
    #[serde(default)]
    kind: Option<Kind>,
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Voice,
    Chat,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    up_to: i64,
    #[serde(default)]
    note: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    let serde = serde_json::from_slice::<Body>(data);
    match steward_wire::parse::<Body>(data) {
        Ok(body) => {
            if let Ok(plain) = serde {
                assert_eq!(plain, body);
            }
            let written = serde_json::to_vec(&body).expect("a body serialises");
            assert_eq!(steward_wire::parse::<Body>(&written).ok(), Some(body));
        }
        Err(e) => {
            assert!(serde.is_err(), "serde read what parse refused: {e:?}");
            assert!(
                ["invalid JSON", "invalid request body", "field "]
                    .iter()
                    .any(|p| e.message.starts_with(p)),
                "{e:?}"
            );
            // `?` is how a path with an unknown step prints: only a key of the input's
            // own may hold one.
            if let Some(field) = &e.field {
                assert!(!field.is_empty(), "{e:?}");
                assert!(
                    !field.contains('?') || String::from_utf8_lossy(data).contains('?'),
                    "{e:?}"
                );
            }
        }
    }
});
