//! vCard over HTTP, for the directory and device contacts: bodies sent as
//! `text/vcard`, and answers in JSON or in vCard 4.0 or 3.0, chosen by the
//! query (`format=vcard`, `version=3.0`) or the `Accept` header
//! (`text/vcard`, `text/vcard; version=3.0`, `text/x-vcard`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use steward_vcard::Version;
use utoipa::IntoParams;

use super::ApiError;
use super::extract::parse_json;
use crate::directory::parse_version;

/// Media types read as vCard.
pub const VCARD_TYPES: [&str; 3] = ["text/vcard", "text/x-vcard", "text/directory"];

/// The media type of a vCard answer.
pub const VCARD_CONTENT_TYPE: &str = "text/vcard; charset=utf-8";

/// The media type without parameters, in lower case.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_vcard(content_type: &str) -> bool {
    VCARD_TYPES.contains(&essence(content_type).as_str())
}

fn is_json(content_type: &str) -> bool {
    let e = essence(content_type);
    e == "application/json" || (e.starts_with("application/") && e.ends_with("+json"))
}

fn content_type(req: &Request) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Reads the body, answering 413 over `limit` (the route's body limit).
async fn bytes<S: Send + Sync>(req: Request, state: &S, limit: usize) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {limit} bytes"),
                None,
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.body_text(), None)
        }
    })
}

/// A `text/vcard` body (also `text/x-vcard`, `text/directory`) of at most
/// `LIMIT` bytes; the route sets the same limit with `DefaultBodyLimit`.
pub struct VcardBody<const LIMIT: usize>(pub Bytes);

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for VcardBody<LIMIT> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !content_type(&req).as_deref().is_some_and(is_vcard) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid",
                "send the body as a vCard file with Content-Type: text/vcard",
                None,
            ));
        }
        Ok(VcardBody(bytes(req, state, LIMIT).await?))
    }
}

/// A body that is either JSON (`T`) or a vCard, by its content type.
pub enum JsonOrVcard<T> {
    Json(T),
    Vcard(Bytes),
}

/// [`JsonOrVcard`] under a `LIMIT`-byte body limit.
pub struct JsonOrVcardBody<T, const LIMIT: usize>(pub JsonOrVcard<T>);

impl<T: serde::de::DeserializeOwned, S: Send + Sync, const LIMIT: usize> FromRequest<S>
    for JsonOrVcardBody<T, LIMIT>
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = content_type(&req);
        if ct.as_deref().is_some_and(is_vcard) {
            return Ok(JsonOrVcardBody(JsonOrVcard::Vcard(
                bytes(req, state, LIMIT).await?,
            )));
        }
        if ct.as_deref().is_some_and(is_json) {
            let b = bytes(req, state, LIMIT).await?;
            // serde reads a struct from an array too, field by field in order;
            // a contact is sent as an object, so anything else is refused.
            if b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'[') {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "invalid request body: expected a JSON object (one contact)",
                    None,
                ));
            }
            return parse_json(&b).map(|v| JsonOrVcardBody(JsonOrVcard::Json(v)));
        }
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid",
            "send the contact as JSON (Content-Type: application/json) or as a vCard \
             (Content-Type: text/vcard)",
            None,
        ))
    }
}

/// How a GET answers.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FormatQuery {
    /// `json` (the default) or `vcard`. Without it, an `Accept` header asking for
    /// `text/vcard` (or `text/x-vcard`) gets a vCard.
    #[param(inline, value_type = Option<FormatName>)]
    pub format: Option<String>,
    /// The vCard version: `4.0` (the default; `3.0` for `Accept: text/x-vcard`)
    /// or `3.0` (`4` and `3` work too). Without `format`, it asks for a vCard;
    /// with `format=json` it has no effect. `Accept: text/vcard; version=3.0`
    /// works too.
    #[param(inline, value_type = Option<VersionName>)]
    pub version: Option<String>,
}

/// The answer formats a GET offers (for the document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum FormatName {
    Json,
    Vcard,
}

/// The vCard versions written (for the document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum VersionName {
    #[schema(rename = "4.0")]
    V4,
    #[schema(rename = "3.0")]
    V3,
    #[schema(rename = "4")]
    Four,
    #[schema(rename = "3")]
    Three,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Json,
    Vcard(Version),
}

/// The vCard version an `Accept` header asks for, if it asks for a vCard.
fn accepted_vcard(headers: &HeaderMap) -> Result<Option<Version>, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        if !VCARD_TYPES.contains(&media.as_str()) {
            continue;
        }
        let mut version = if media == "text/x-vcard" {
            Version::V3
        } else {
            Version::V4
        };
        for p in parts {
            if let Some((k, v)) = p.split_once('=')
                && k.trim().eq_ignore_ascii_case("version")
            {
                version = parse_version("version", v.trim().trim_matches('"'))?;
            }
        }
        return Ok(Some(version));
    }
    Ok(None)
}

/// Chooses the answer's format from the query, then the `Accept` header.
pub fn negotiate(q: &FormatQuery, headers: &HeaderMap) -> Result<Answer, ApiError> {
    // Exactly as the document's enums write them.
    let version = q
        .version
        .as_deref()
        .map(|v| parse_version("version", v))
        .transpose()?;
    match q.format.as_deref() {
        Some("json") => Ok(Answer::Json),
        Some("vcard") => Ok(Answer::Vcard(
            version.or(accepted_vcard(headers)?).unwrap_or(Version::V4),
        )),
        Some(other) => Err(ApiError::from(crate::Error::invalid(
            "format",
            format!("format {other:?} is not offered: use json or vcard"),
        ))),
        None => match (version, accepted_vcard(headers)?) {
            (Some(v), _) => Ok(Answer::Vcard(v)),
            (None, Some(v)) => Ok(Answer::Vcard(v)),
            (None, None) => Ok(Answer::Json),
        },
    }
}

/// A vCard answer; `filename` makes it a download.
pub fn vcard_response(text: String, filename: Option<&str>) -> Response {
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(VCARD_CONTENT_TYPE),
        )],
        text,
    )
        .into_response();
    if let Some(name) = filename
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
    {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(header::ACCEPT, v);
        }
        h
    }

    fn q(format: Option<&str>, version: Option<&str>) -> FormatQuery {
        FormatQuery {
            format: format.map(str::to_owned),
            version: version.map(str::to_owned),
        }
    }

    #[test]
    fn the_query_wins_then_accept() {
        let none = HeaderMap::new();
        assert_eq!(negotiate(&q(None, None), &none).ok(), Some(Answer::Json));
        assert_eq!(
            negotiate(&q(Some("vcard"), None), &none).ok(),
            Some(Answer::Vcard(Version::V4))
        );
        assert_eq!(
            negotiate(&q(None, Some("3.0")), &none).ok(),
            Some(Answer::Vcard(Version::V3))
        );
        assert_eq!(
            negotiate(
                &q(None, None),
                &accept("application/json, text/vcard;version=3.0")
            )
            .ok(),
            Some(Answer::Vcard(Version::V3))
        );
        assert_eq!(
            negotiate(&q(None, None), &accept("text/x-vcard")).ok(),
            Some(Answer::Vcard(Version::V3))
        );
        assert_eq!(
            negotiate(&q(Some("json"), None), &accept("text/vcard")).ok(),
            Some(Answer::Json)
        );
        assert_eq!(
            negotiate(
                &q(Some("vcard"), Some("4.0")),
                &accept("text/vcard; version=3.0")
            )
            .ok(),
            Some(Answer::Vcard(Version::V4))
        );
        assert!(negotiate(&q(Some("xml"), None), &none).is_err());
        // A version with format=json has no effect (the two never conflict).
        assert_eq!(
            negotiate(&q(Some("json"), Some("3.0")), &none).ok(),
            Some(Answer::Json)
        );
        // Values exactly as the document's enums write them.
        assert!(negotiate(&q(Some("json "), None), &none).is_err());
        assert!(negotiate(&q(None, Some(" 4.0")), &none).is_err());
        assert!(negotiate(&q(None, Some("")), &none).is_err());
        assert!(negotiate(&q(None, Some("2.1")), &none).is_err());
        assert!(negotiate(&q(None, None), &accept("text/vcard; version=5.0")).is_err());
    }

    #[test]
    fn content_types() {
        assert!(is_vcard("text/vcard"));
        assert!(is_vcard("Text/VCard; charset=utf-8"));
        assert!(is_vcard("text/x-vcard"));
        assert!(!is_vcard("text/plain"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(!is_json("application/jsonp"));
    }
}
