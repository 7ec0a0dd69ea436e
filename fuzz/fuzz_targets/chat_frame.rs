//! The chat socket's text frames. Properties: an echoed `client_id` is the frame's own
//! and usable (at most 64 printable characters); a refusal names a real field or none,
//! never an unknown path; a frame accepted has the type it said.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_wire::frame::usable_client_id;
use steward_wire::{ClientFrame, parse_frame};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let value = serde_json::from_str::<serde_json::Value>(text).ok();
    let sent_id = value
        .as_ref()
        .and_then(|v| v.get("client_id"))
        .and_then(serde_json::Value::as_str)
        .filter(|c| usable_client_id(c));
    match parse_frame(text) {
        Ok((frame, echoed)) => {
            assert_eq!(echoed.as_deref(), sent_id);
            let kind = value
                .as_ref()
                .and_then(|v| v.get("type"))
                .and_then(|t| t.as_str());
            let expected = match frame {
                ClientFrame::Send(_) => "send",
                ClientFrame::Delivered(_) => "delivered",
                ClientFrame::Read(_) => "read",
            };
            assert_eq!(kind, Some(expected));
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            if value.is_some() {
                assert_eq!(e.client_id.as_deref(), sent_id, "{e:?}");
            } else {
                assert_eq!(e.client_id, None);
            }
            // `?` is how a path with an unknown step prints: only a key of the input's
            // own may hold one.
            if let Some(field) = &e.field {
                assert!(!field.is_empty(), "{e:?}");
                assert!(!field.contains('?') || text.contains('?'), "{e:?}");
            }
        }
    }
});
