//! Request extractors that answer in the API's error shape: JSON bodies with
//! the failing field and position named, and bearer-token authentication.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState, blocking};
use crate::access::Actor;
use crate::accounts;
use crate::error::Error;

/// A JSON body. Malformed JSON, wrong types, unknown and missing fields are
/// rejected with 400 and a message naming the field and position; an oversize
/// body with 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid",
                "send the body as JSON with Content-Type: application/json",
                None,
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is larger than {} bytes", super::MAX_JSON_BODY),
                    None,
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.body_text(), None)
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body read as [`ApiJson`] reads one, for a route whose router sets a
/// smaller `DefaultBodyLimit` of `limit` bytes (named in the 413 message).
pub(crate) async fn json_with_limit<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
    limit: usize,
) -> Result<T, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json);
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid",
            "send the body as JSON with Content-Type: application/json",
            None,
        ));
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|e| {
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
    })?;
    parse_json(&bytes)
}

/// `application/json` or `application/…+json`, in any case, with any
/// parameters (`; charset=utf-8`); not look-alikes such as `application/jsonp`.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A JSON body as a `T`, refused with 400 naming the field (see
/// [`steward_wire::json`]).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    steward_wire::parse(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.message, e.field))
}

/// The authenticated caller, from `Authorization: Bearer <token>`.
pub struct Authed(pub Actor);

pub(crate) fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty() && token.len() <= 256).then(|| token.to_owned())
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| ApiError::from(Error::Unauthenticated))?;
        let actor = blocking(state, move |core| accounts::authenticate(core, &token)).await?;
        Ok(Authed(actor))
    }
}

/// Query parameters, rejected in the API's error shape when malformed.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.body_text(), None))
    }
}

/// Path parameters, rejected in the API's error shape (a parameter that is not
/// UTF-8 once percent-decoded, for one) with the parameter named.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| {
                let field = match &e {
                    PathRejection::FailedToDeserializePathParams(d) => match d.kind() {
                        ErrorKind::ParseErrorAtKey { key, .. }
                        | ErrorKind::InvalidUtf8InPathParam { key }
                        | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                let status = e.status();
                let code = if status.is_client_error() {
                    "invalid"
                } else {
                    "internal"
                };
                ApiError::new(status, code, e.body_text(), field)
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse_json;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        up_to: i64,
    }

    #[test]
    fn a_refused_body_is_a_400_naming_the_field() {
        let e = parse_json::<Body>(br#"{"up_to": 7484.5}"#).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(e.body.error.code, "invalid");
        assert_eq!(e.body.error.field.as_deref(), Some("up_to"), "{e:?}");
    }
}
