//! JSON request bodies.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a body was refused: a message for the client and, when one is to blame, the
/// field (a path such as `items[0]` or `address.city`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// What was wrong, in words; syntax errors give the line and column.
    pub message: String,
    /// The field to blame, when there is one.
    pub field: Option<String>,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BodyError {}

/// Reads one JSON value of type `T` from `bytes`; only whitespace may follow it.
///
/// A body refused as it was sent is read again with its integral numbers written as
/// integers (`7484.0` → `7484`), so that a number the OpenAPI document calls an integer
/// is one here too; `7484.5` stays refused, naming its field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize(&mut *de) {
        Ok(value) => value,
        Err(e) => {
            if let Some(value) = integral(bytes) {
                return typed(value);
            }
            return Err(body_error(e));
        }
    };
    de.end().map_err(|e| BodyError {
        message: format!("invalid JSON: {e}"),
        field: None,
    })?;
    Ok(value)
}

/// `value` as a `T`, the failing field named.
pub(crate) fn typed<T: DeserializeOwned>(value: Value) -> Result<T, BodyError> {
    serde_path_to_error::deserialize(value).map_err(body_error)
}

fn body_error(e: serde_path_to_error::Error<serde_json::Error>) -> BodyError {
    let path = e.path().to_string();
    let unknown_step = e
        .path()
        .iter()
        .any(|s| matches!(s, serde_path_to_error::Segment::Unknown));
    let inner = e.into_inner();
    // The body itself is to blame, not a field, when the path is the root, the empty
    // key (`{"": 1}`), or has a step serde could not name (printed `?`: where a syntax
    // error cut a key short, say).
    let path = if unknown_step || path.is_empty() {
        ".".to_owned()
    } else {
        path
    };
    // A syntax error gives its position, with the field it was in when known (`null`
    // where an enum goes is one, in serde_json's eyes).
    let message = match &path[..] {
        "." if inner.is_data() => format!("invalid request body: {inner}"),
        "." => format!("invalid JSON: {inner}"),
        f => format!("field {f}: {inner}"),
    };
    // A missing or repeated field is reported at its parent's path; serde names it in
    // the message.
    let field = (path != ".")
        .then_some(path)
        .or_else(|| named_field(&message));
    BodyError { message, field }
}

/// The body as a JSON value with every number that has no fractional part and fits an
/// `i64` (`7484.0`, `1e3`) made an integer; `None` when the body is not one JSON value or
/// holds no such number.
fn integral(bytes: &[u8]) -> Option<Value> {
    let mut value: Value = serde_json::from_slice(bytes).ok()?;
    integers(&mut value).then_some(value)
}

/// Makes every integral float in `v` an integer; whether there was one.
pub(crate) fn integers(v: &mut Value) -> bool {
    match v {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            match n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                // Exact: below 2^53 every integral f64 is an integer.
                Some(f) => {
                    *v = Value::from(f as i64);
                    true
                }
                None => false,
            }
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, i| integers(i) | c),
        Value::Object(map) => map.values_mut().fold(false, |c, i| integers(i) | c),
        _ => false,
    }
}

/// The field serde names in a "missing field `x`" or "duplicate field `x`" message.
pub fn named_field(message: &str) -> Option<String> {
    ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|p| {
            let rest = &message[message.find(p)? + p.len()..];
            rest.split('`').next().map(str::to_owned)
        })
        .filter(|f| !f.is_empty())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        up_to: i64,
        #[serde(default)]
        items: Vec<u32>,
    }

    #[test]
    fn integral_numbers_written_as_floats_are_integers() {
        let b: Body = parse(br#"{"up_to": 7484.0, "items": [1.0, 2e0]}"#).unwrap();
        assert_eq!(
            b,
            Body {
                up_to: 7484,
                items: vec![1, 2]
            }
        );
        let e = parse::<Body>(br#"{"up_to": 7484.5}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("up_to"), "{e:?}");
        // A wrong field elsewhere is named, not the number that was fine.
        let e = parse::<Body>(br#"{"up_to": 1.0, "items": ["x"]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[0]"), "{e:?}");
        let e = parse::<Body>(br#"{"up_to": 1.0, "other": 1}"#).unwrap_err();
        assert!(e.message.contains("unknown field `other`"), "{e:?}");
        assert!(parse::<Body>(br#"{"up_to": 1e300}"#).is_err());
    }

    /// serde_json stops at 128 levels of nesting: a body nested deeper (a stack
    /// exhaustion attempt) is refused, quickly and by position, not by a crash.
    #[test]
    fn deep_nesting_is_refused() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Any {
            items: serde_json::Value,
        }
        let deep = format!(
            "{{\"items\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = parse::<Any>(deep.as_bytes()).unwrap_err();
        assert!(e.message.contains("recursion limit exceeded"), "{e:?}");
        let e = parse::<Body>(deep.replace("items", "up_to").as_bytes()).unwrap_err();
        assert!(
            e.message.starts_with("field up_to") || e.message.starts_with("invalid"),
            "{e:?}"
        );
    }

    #[test]
    fn refusals_name_the_field_or_the_position() {
        let e = parse::<Body>(br#"{"items": []}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("up_to"), "{e:?}");
        let e = parse::<Body>(br#"{"up_to": 1, "up_to": 2}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("up_to"), "{e:?}");
        let e = parse::<Body>(b"{\n  \"up_to\": 1,\n  oops\n}").unwrap_err();
        assert!(e.message.contains("line 3"), "{e:?}");
        assert_eq!(e.field, None);
        let e = parse::<Body>(br#"{"up_to": 1} trailing"#).unwrap_err();
        assert!(e.message.starts_with("invalid JSON"), "{e:?}");
        // The empty key is unknown, but no field to name.
        let e = parse::<Body>(br#"{"up_to": 1, "": 2}"#).unwrap_err();
        assert_eq!(e.field, None, "{e:?}");
        assert!(
            e.message
                .starts_with("invalid request body: unknown field ``"),
            "{e:?}"
        );
        let e = parse::<Body>(b"").unwrap_err();
        assert!(e.message.starts_with("invalid JSON"), "{e:?}");
    }
}
