//! Frames a client sends over the chat socket.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::json::{BodyError, integers, typed};

/// The longest `client_id` a frame may carry, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// A frame the client sends over the chat socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Send a message; answered with `sent` (or `error`) once stored.
    Send(SendFrame),
    /// Messages you received up to an id reached your device; answered with `marked`.
    Delivered(MarkFrame),
    /// You read messages up to an id; answered with `marked`.
    Read(MarkFrame),
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SendFrame {
    /// The conversation to send to.
    pub conversation_id: String,
    /// The text; may be empty when the message carries files.
    #[serde(default)]
    pub body: String,
    /// Ids of your pending uploads to this conversation (at most 10).
    #[serde(default)]
    pub attachments: Vec<String>,
    /// Your own id for the frame (at most 64 characters), echoed in the answer.
    pub client_id: Option<String>,
}

/// Messages delivered or read, up to an id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MarkFrame {
    /// The conversation.
    pub conversation_id: String,
    /// The last message id (per conversation) the mark covers.
    pub up_to: i64,
    /// Your own id for the frame (at most 64 characters), echoed in the answer.
    pub client_id: Option<String>,
}

/// A frame refused: why, the field to blame, and the frame's `client_id` to echo in the
/// `error` answer (when it had a usable one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// What was wrong, in words.
    pub message: String,
    /// The field to blame, when there is one.
    pub field: Option<String>,
    /// The frame's `client_id`, when it is a string of at most
    /// [`MAX_CLIENT_ID_CHARS`] characters without control characters.
    pub client_id: Option<String>,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FrameError {}

/// Whether `id` may be echoed: at most [`MAX_CLIENT_ID_CHARS`] characters, none of them
/// a control character.
pub fn usable_client_id(id: &str) -> bool {
    id.chars().count() <= MAX_CLIENT_ID_CHARS && !id.chars().any(char::is_control)
}

/// Parses a client frame; with it, its `client_id` when usable (see [`FrameError`]).
pub fn parse_frame(text: &str) -> Result<(ClientFrame, Option<String>), FrameError> {
    let refuse = |field: Option<&str>, message: String, client_id: Option<String>| FrameError {
        message,
        field: field.map(str::to_owned),
        client_id,
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| refuse(None, format!("invalid JSON: {e}"), None))?;
    let Value::Object(mut obj) = value else {
        return Err(refuse(
            None,
            "a frame is a JSON object with a \"type\": send, delivered or read".to_owned(),
            None,
        ));
    };
    let client_id = obj
        .get("client_id")
        .and_then(Value::as_str)
        .filter(|c| usable_client_id(c))
        .map(str::to_owned);
    let kind = match obj.remove("type") {
        Some(Value::String(t)) => t,
        Some(_) => {
            return Err(refuse(
                Some("type"),
                "type is a string: send, delivered or read".to_owned(),
                client_id,
            ));
        }
        None => {
            return Err(refuse(
                Some("type"),
                "missing field `type`: send, delivered or read".to_owned(),
                client_id,
            ));
        }
    };
    let rest = Value::Object(obj);
    let fail = |e: BodyError| FrameError {
        message: e.message,
        field: e.field,
        client_id: client_id.clone(),
    };
    let frame = match kind.as_str() {
        "send" => ClientFrame::Send(fields(rest).map_err(fail)?),
        "delivered" => ClientFrame::Delivered(fields(rest).map_err(fail)?),
        "read" => ClientFrame::Read(fields(rest).map_err(fail)?),
        other => {
            return Err(refuse(
                Some("type"),
                format!(
                    "unknown frame type {:?}: expected send, delivered or read",
                    other.chars().take(40).collect::<String>()
                ),
                client_id,
            ));
        }
    };
    Ok((frame, client_id))
}

/// A frame's fields, the failing one named; integral floats count as integers, as in
/// the HTTP API's bodies.
fn fields<T: DeserializeOwned>(mut v: Value) -> Result<T, BodyError> {
    // The frame is a value already: integral floats are made integers before it is
    // read (once, no copy), which reads every frame the HTTP bodies' retry would.
    integers(&mut v);
    typed(v).map_err(|e| BodyError {
        message: e.message.replace("invalid request body", "invalid frame"),
        field: e.field,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> FrameError {
        match parse_frame(text) {
            Err(e) => e,
            Ok((f, _)) => panic!("{text}: parsed as {f:?}"),
        }
    }

    #[test]
    fn frames_parse_and_refusals_name_the_field() {
        let (f, id) =
            parse_frame(r#"{"type":"send","conversation_id":"x","body":"hi","client_id":"c1"}"#)
                .unwrap();
        assert!(matches!(f, ClientFrame::Send(_)));
        assert_eq!(id.as_deref(), Some("c1"));
        let e = refused("{not json");
        assert!(e.message.contains("invalid JSON"), "{e}");
        let e = refused("[1]");
        assert!(e.message.contains("JSON object"), "{e}");
        let e = refused(r#"{"type":"shout","client_id":"c2"}"#);
        assert_eq!(
            (e.field.as_deref(), e.client_id.as_deref()),
            (Some("type"), Some("c2"))
        );
        let e = refused(r#"{"conversation_id":"x"}"#);
        assert_eq!(e.field.as_deref(), Some("type"));
        // A missing body parses (a message may carry only files); the domain refuses an
        // empty one. A body that is not text does not parse.
        assert!(parse_frame(r#"{"type":"send","conversation_id":"x"}"#).is_ok());
        let e = refused(r#"{"type":"send","conversation_id":"x","body":5}"#);
        assert_eq!(e.field.as_deref(), Some("body"), "{e}");
        let e = refused(r#"{"type":"read","conversation_id":"x","up_to":"ten"}"#);
        assert_eq!(e.field.as_deref(), Some("up_to"), "{e}");
        let e = refused(r#"{"type":"read","conversation_id":"x","up_to":1,"colour":"red"}"#);
        assert!(e.message.contains("colour"), "{e}");
        let e = refused(r#"{"type":"read","up_to":1}"#);
        assert_eq!(e.field.as_deref(), Some("conversation_id"), "{e}");
    }

    #[test]
    fn client_ids_are_echoed_only_when_usable() {
        let long = "x".repeat(MAX_CLIENT_ID_CHARS + 1);
        let e = refused(&format!(r#"{{"type":"shout","client_id":"{long}"}}"#));
        assert_eq!(e.client_id, None);
        let e = refused(r#"{"type":"shout","client_id":"a\u0007b"}"#);
        assert_eq!(e.client_id, None);
        let e = refused(r#"{"type":"shout","client_id":7}"#);
        assert_eq!(e.client_id, None);
        let ok = "é".repeat(MAX_CLIENT_ID_CHARS);
        let e = refused(&format!(r#"{{"type":"shout","client_id":"{ok}"}}"#));
        assert_eq!(e.client_id.as_deref(), Some(&ok[..]));
    }

    #[test]
    fn integral_marks_written_as_floats_are_integers() {
        let (f, _) = parse_frame(r#"{"type":"read","conversation_id":"x","up_to":7.0}"#).unwrap();
        assert!(matches!(f, ClientFrame::Read(MarkFrame { up_to: 7, .. })));
        let e = refused(r#"{"type":"read","conversation_id":"x","up_to":7.5}"#);
        assert_eq!(e.field.as_deref(), Some("up_to"), "{e}");
        assert!(e.message.starts_with("field up_to"), "{e}");
    }
}
