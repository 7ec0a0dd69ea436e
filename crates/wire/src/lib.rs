//! steward-wire: reading what clients send, with errors that name the field.
//!
//! * [`json`]: a JSON request body into a typed value. Malformed JSON, wrong types,
//!   unknown, missing and repeated fields are refused with a message naming the field
//!   (`items[0]`) and, for syntax errors, the line and column. Integral numbers written
//!   as floats (`7484.0`, `1e3`) count as integers, as JSON Schema (and so the OpenAPI
//!   document) counts them.
//! * [`frame`]: a text frame of the chat socket (`send`, `delivered`, `read`), read the
//!   same way, with the frame's `client_id` kept for the answer when it is usable.
//!
//! Both are pure functions of the bytes received, without I/O, so that the fuzz targets
//! in `fuzz/` can run them millions of times; the HTTP layer maps their errors to its
//! 400 answers.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod frame;
pub mod json;

pub use frame::{ClientFrame, FrameError, MAX_CLIENT_ID_CHARS, MarkFrame, SendFrame, parse_frame};
pub use json::{BodyError, parse};
