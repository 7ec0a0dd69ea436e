//! The console's stylesheet and script, compiled into the binary: nothing is
//! fetched from anywhere at build or run time.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{WebPath, WebResult};
use crate::error::Error;

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

pub async fn serve(WebPath(file): WebPath<String>) -> WebResult<Response> {
    let (body, kind) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return Err(Error::NotFound("file".into()).into()),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(resp)
}
