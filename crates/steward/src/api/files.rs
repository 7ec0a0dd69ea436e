//! What the routes that take or give a file share: the request body as a
//! stream with its declared type, and the download response.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};

use super::ApiError;
use crate::error::Error;

/// A file sent as the whole request body: the `Content-Type` the client
/// declared, and the body as a stream. No size limit applies here: the domain
/// operation enforces its own as the bytes arrive (`files::store`).
pub struct FileBody {
    pub content_type: Option<String>,
    pub stream: BoxStream<'static, std::io::Result<Bytes>>,
}

impl<S: Send + Sync> FromRequest<S> for FileBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| {
                v.to_str().map(str::to_owned).map_err(|_| {
                    ApiError::from(Error::invalid(
                        "content-type",
                        "the Content-Type header is not text",
                    ))
                })
            })
            .transpose()?;
        let stream = req
            .into_body()
            .into_data_stream()
            .map_err(std::io::Error::other)
            .boxed();
        Ok(FileBody {
            content_type,
            stream,
        })
    }
}

/// A file download: its type, length, no caching, no sniffing by the browser.
pub(crate) fn file_response(content_type: &str, size: u64, body: Body) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment"),
    );
    resp
}
