//! Turning a blob-store URL into an `object_store` backend.
//!
//! Error messages never repeat the URL itself (it may carry credentials in its query), only
//! the part that is wrong.

use std::collections::HashSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, path::Path};
use url::Url;

use crate::BlobError;
use crate::key::validate_prefix;

const S3_PARAMS: &str = "endpoint, region, allow_http, virtual_hosted_style_request, \
                         access_key_id, secret_access_key, session_token";

fn bad_url(msg: impl Into<String>) -> BlobError {
    BlobError::InvalidUrl(msg.into())
}

pub(crate) struct Opened {
    pub store: Arc<dyn ObjectStore>,
    pub description: String,
    pub local_root: Option<PathBuf>,
}

pub(crate) fn open(url: Option<&str>, data_dir: &FsPath) -> Result<Opened, BlobError> {
    let Some(raw) = url else {
        let dir = data_dir.join("blobs");
        std::fs::create_dir_all(&dir).map_err(|e| {
            BlobError::Open(format!("cannot create blob folder {}: {e}", dir.display()))
        })?;
        return open_local(&dir);
    };
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(bad_url(
            "the blob store URL is empty (leave it unset for <data_dir>/blobs)",
        ));
    }
    if raw == "memory:" || raw == "memory://" {
        return Ok(Opened {
            store: Arc::new(InMemory::new()),
            description: "in-memory blob store (not persistent)".to_owned(),
            local_root: None,
        });
    }
    // The URL parser would silently resolve `.` and `..`; a configured path should not
    // need them, so refuse rather than guess.
    let before_query = raw.split(['?', '#']).next().unwrap_or_default();
    if before_query.split('/').skip(3).any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    }) {
        return Err(bad_url("'.' and '..' are not allowed in the URL's path"));
    }
    let parsed = Url::parse(raw).map_err(|e| {
        bad_url(format!(
            "not a URL ({e}); expected file:///absolute/path, s3://bucket[/prefix] or memory:"
        ))
    })?;
    match parsed.scheme() {
        "file" => open_file_url(&parsed),
        "s3" => open_s3(&parsed),
        other => Err(bad_url(format!(
            "unsupported scheme '{other}': expected file:///absolute/path, s3://bucket[/prefix] or memory:"
        ))),
    }
}

fn open_file_url(url: &Url) -> Result<Opened, BlobError> {
    if url
        .host_str()
        .is_some_and(|h| !h.is_empty() && h != "localhost")
    {
        return Err(bad_url(
            "a file URL needs an absolute path and no host: file:///absolute/path",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad_url("a file URL takes no query or fragment"));
    }
    let dir = url
        .to_file_path()
        .map_err(|()| bad_url("a file URL needs an absolute path: file:///absolute/path"))?;
    // Not created on purpose: a typo or an unmounted volume should fail loudly rather than
    // quietly filling the wrong disk.
    if !dir.is_dir() {
        return Err(BlobError::Open(format!(
            "blob folder {} does not exist or is not a directory (create it first)",
            dir.display()
        )));
    }
    open_local(&dir)
}

fn open_local(dir: &FsPath) -> Result<Opened, BlobError> {
    let fs = LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| BlobError::Open(format!("cannot use blob folder {}: {e}", dir.display())))?
        // Remove directories left empty by deletes: they are named after tenants and
        // subjects, so an erased subject must not leave its directory behind.
        .with_automatic_cleanup(true)
        // The database will point at the blob once `put` returns: make that durable.
        .with_fsync(true);
    let root = std::fs::canonicalize(dir).map_err(|e| {
        BlobError::Open(format!("cannot resolve blob folder {}: {e}", dir.display()))
    })?;
    Ok(Opened {
        store: Arc::new(fs),
        description: format!("local folder {}", root.display()),
        local_root: Some(root),
    })
}

fn parse_bool(name: &str, value: &str) -> Result<bool, BlobError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(bad_url(format!(
            "query parameter '{name}' must be true or false"
        ))),
    }
}

/// S3 bucket naming rules (the subset that matters for path-style access).
fn validate_bucket(bucket: &str) -> Result<(), BlobError> {
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ok_ends = bucket
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && bucket
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if (3..=63).contains(&bucket.len()) && ok_chars && ok_ends && !bucket.contains("..") {
        Ok(())
    } else {
        Err(bad_url(format!(
            "invalid S3 bucket name '{bucket}': 3-63 characters of a-z 0-9 '-' '.', \
             starting and ending with a letter or digit"
        )))
    }
}

/// The endpoint as shown in logs: scheme, host, port and path only.
fn redacted_endpoint(endpoint: &str) -> String {
    match Url::parse(endpoint) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let path = u.path().trim_end_matches('/');
            format!("{}://{host}{port}{path}", u.scheme())
        }
        Err(_) => "(unparsable endpoint)".to_owned(),
    }
}

fn validate_endpoint(endpoint: &str) -> Result<(), BlobError> {
    let u = Url::parse(endpoint).map_err(|e| {
        bad_url(format!(
            "S3 endpoint is not a URL ({e}); expected e.g. http://127.0.0.1:9000"
        ))
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad_url(format!(
            "S3 endpoint scheme must be http or https, not '{}'",
            u.scheme()
        )));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad_url("S3 endpoint has no host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad_url(
            "S3 endpoint must not carry credentials; use access_key_id/secret_access_key \
             or AWS_* environment variables",
        ));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(bad_url("S3 endpoint takes no query or fragment"));
    }
    Ok(())
}

fn open_s3(url: &Url) -> Result<Opened, BlobError> {
    let bucket = url.host_str().unwrap_or_default();
    if bucket.is_empty() {
        return Err(bad_url(
            "missing bucket name: expected s3://bucket[/prefix]",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad_url(
            "credentials must not be put before the bucket name; use the access_key_id and \
             secret_access_key query parameters or the AWS_* environment variables",
        ));
    }
    if url.port().is_some() {
        return Err(bad_url(
            "an s3:// URL takes no port; put the server in ?endpoint=http://host:port",
        ));
    }
    if url.fragment().is_some() {
        return Err(bad_url("an s3:// URL takes no fragment"));
    }
    validate_bucket(bucket)?;
    let prefix_str = url.path().strip_prefix('/').unwrap_or(url.path());
    let prefix: Option<Path> = validate_prefix(prefix_str).map_err(|e| match e {
        BlobError::InvalidKey { reason, .. } => {
            bad_url(format!("invalid prefix in s3:// URL: {reason}"))
        }
        other => other,
    })?;

    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let mut seen = HashSet::new();
    for (name, value) in url.query_pairs() {
        if !seen.insert(name.to_string()) {
            return Err(bad_url(format!("query parameter '{name}' is given twice")));
        }
        if value.is_empty() {
            return Err(bad_url(format!("query parameter '{name}' has no value")));
        }
        builder = match name.as_ref() {
            "endpoint" => {
                validate_endpoint(&value)?;
                builder.with_endpoint(value.trim_end_matches('/'))
            }
            "region" => builder.with_region(value.as_ref()),
            "allow_http" => builder.with_allow_http(parse_bool(&name, &value)?),
            "virtual_hosted_style_request" => {
                builder.with_virtual_hosted_style_request(parse_bool(&name, &value)?)
            }
            "access_key_id" => builder.with_access_key_id(value.as_ref()),
            "secret_access_key" => builder.with_secret_access_key(value.as_ref()),
            "session_token" => builder.with_token(value.as_ref()),
            other => {
                return Err(bad_url(format!(
                    "unknown query parameter '{other}' (supported: {S3_PARAMS})"
                )));
            }
        };
    }

    let endpoint = builder
        .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
    if let Some(ep) = &endpoint {
        validate_endpoint(ep)?;
        let allow_http = builder
            .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if ep.starts_with("http://") && !allow_http {
            return Err(bad_url(
                "the S3 endpoint uses plain http:// but allow_http=true is not set",
            ));
        }
    }
    let region = builder
        .get_config_value(&AmazonS3ConfigKey::Region)
        .unwrap_or_else(|| "us-east-1".to_owned());

    let s3 = builder
        .build()
        .map_err(|e| bad_url(format!("S3 configuration: {e}")))?;

    let where_ = endpoint
        .as_deref()
        .map(redacted_endpoint)
        .unwrap_or_else(|| "AWS".to_owned());
    let description = match &prefix {
        Some(p) => format!("S3 bucket '{bucket}' prefix '{p}' at {where_} (region {region})"),
        None => format!("S3 bucket '{bucket}' at {where_} (region {region})"),
    };
    let store: Arc<dyn ObjectStore> = match prefix {
        Some(p) => Arc::new(PrefixStore::new(s3, p)),
        None => Arc::new(s3),
    };
    Ok(Opened {
        store,
        description,
        local_root: None,
    })
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn err(url: &str) -> String {
        match open(Some(url), FsPath::new("/nonexistent")) {
            Ok(o) => panic!("{url} should fail, opened {}", o.description),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn malformed_urls_are_rejected_clearly() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("s3://", "missing bucket"),
            ("s3:///prefix", "missing bucket"),
            ("ftp://x", "unsupported scheme 'ftp'"),
            ("not a url", "not a URL"),
            ("s3://Bad_Bucket", "invalid S3 bucket name"),
            ("s3://ab", "invalid S3 bucket name"),
            ("s3://bucket?foo=1", "unknown query parameter 'foo'"),
            ("s3://bucket?endpoint", "'endpoint' has no value"),
            ("s3://bucket?region=a&region=b", "given twice"),
            ("s3://bucket?allow_http=maybe", "must be true or false"),
            ("s3://bucket?endpoint=ftp://x", "http or https"),
            ("s3://bucket?endpoint=::", "not a URL"),
            (
                "s3://bucket?endpoint=http://127.0.0.1:9000",
                "allow_http=true",
            ),
            ("s3://bucket//double", "invalid prefix"),
            ("s3://bucket/../up", "'..' are not allowed"),
            ("s3://bucket/a/%2E%2E/up", "'..' are not allowed"),
            ("file:///tmp/./x", "'..' are not allowed"),
            ("s3://bucket:9000", "no port"),
            ("s3://key:secret@bucket", "credentials must not"),
            ("file://relative/path", "absolute path"),
            ("file:///surely/not/here/steward-blobs", "does not exist"),
            ("file:///tmp?x=1", "no query"),
        ];
        for (url, needle) in cases {
            let msg = err(url);
            assert!(msg.contains(needle), "{url:?}: {msg:?} lacks {needle:?}");
        }
    }

    #[test]
    fn errors_and_descriptions_never_show_credentials() {
        let msg = err("s3://key:hunter2secret@bucket");
        assert!(!msg.contains("hunter2secret"), "{msg}");
        let msg = err("s3://bucket?secret_access_key=hunter2secret&bogus=1");
        assert!(!msg.contains("hunter2secret"), "{msg}");

        let opened = open(
            Some(
                "s3://my-bucket/steward/blobs?endpoint=http://127.0.0.1:9/&region=eu-west-2\
                 &allow_http=true&access_key_id=AKIDhunter2&secret_access_key=hunter2secret\
                 &session_token=hunter2token",
            ),
            FsPath::new("/nonexistent"),
        );
        let description = match opened {
            Ok(o) => o.description,
            Err(e) => panic!("should open: {e}"),
        };
        assert_eq!(
            description,
            "S3 bucket 'my-bucket' prefix 'steward/blobs' at http://127.0.0.1:9 (region eu-west-2)"
        );
        assert!(!description.contains("hunter2"));
    }
}
