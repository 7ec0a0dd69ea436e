//! One error type for every domain operation. It knows its HTTP status, its CLI
//! exit code and the stable `code` string clients match on; its message is written
//! for the person reading it and never contains personal data or secrets.

use steward_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is wrong; `field` names the offending field when there is one.
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    #[error("authentication required")]
    Unauthenticated,
    #[error("{0}")]
    LoginFailed(String),
    /// Too many attempts; retry after this many seconds.
    #[error("too many failed logins: try again in {0} s")]
    Throttled(i64),
    /// A client sending faster than a limit allows (the chat socket's frame rate).
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    Forbidden(String),
    /// Processing that needs the subject's consent, without current consent.
    #[error("no current consent of the subject for purpose {purpose}")]
    ConsentRequired { purpose: String },
    /// Not found, or not visible to this caller: the two are indistinguishable on
    /// purpose, so a caller cannot probe another tenant's ids.
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A body or file over its size limit.
    #[error("{0}")]
    TooLarge(String),
    /// Content of a type the operation does not take (or not the type declared).
    #[error("{0}")]
    UnsupportedType(String),
    #[error("database is busy, try again: {0}")]
    Busy(String),
    /// The disk under the database is full: nothing was written, reads go on.
    #[error(
        "storage is full, nothing was written: free space where the data is kept, then retry ({0})"
    )]
    StorageFull(String),
    #[error("storage error: {0}")]
    Store(String),
    #[error("key store error: {0}")]
    Keys(String),
    #[error("blob store error: {0}")]
    Blobs(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: &str, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// Stable machine-readable code for the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid { .. } => "invalid",
            Error::Unauthenticated => "unauthenticated",
            Error::LoginFailed(_) => "login_failed",
            Error::Throttled(_) => "throttled",
            Error::RateLimited(_) => "rate_limited",
            Error::Forbidden(_) => "forbidden",
            Error::ConsentRequired { .. } => "consent_required",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::TooLarge(_) => "payload_too_large",
            Error::UnsupportedType(_) => "unsupported_media_type",
            Error::Busy(_) => "busy",
            Error::StorageFull(_) => "storage_full",
            Error::Store(_) | Error::Keys(_) | Error::Blobs(_) | Error::Internal(_) => "internal",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            Error::Invalid { .. } => 400,
            Error::Unauthenticated | Error::LoginFailed(_) => 401,
            Error::Throttled(_) | Error::RateLimited(_) => 429,
            Error::Forbidden(_) | Error::ConsentRequired { .. } => 403,
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::TooLarge(_) => 413,
            Error::UnsupportedType(_) => 415,
            Error::Busy(_) | Error::StorageFull(_) => 503,
            Error::Store(_) | Error::Keys(_) | Error::Blobs(_) | Error::Internal(_) => 500,
        }
    }

    /// Exit code for the CLI: 2 for bad input, 3 for refusals, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self.http_status() {
            400 | 413 | 415 => 2,
            401 | 403 | 404 | 409 | 429 => 3,
            _ => 1,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Error::Conflict(m),
            StoreError::Busy(m) => Error::Busy(m),
            StoreError::Full(m) => Error::StorageFull(m),
            // The database went away (a restart, a network cut): the pool drops the
            // dead connection and the next request connects again, so the client is
            // told to retry (503), not that the server failed.
            StoreError::Connect(m) => Error::Busy(format!("cannot reach the database: {m}")),
            other => Error::Store(other.to_string()),
        }
    }
}

impl From<steward_crypto::Error> for Error {
    fn from(e: steward_crypto::Error) -> Self {
        Error::Keys(e.to_string())
    }
}

impl From<steward_blobs::BlobError> for Error {
    fn from(e: steward_blobs::BlobError) -> Self {
        Error::Blobs(e.to_string())
    }
}
