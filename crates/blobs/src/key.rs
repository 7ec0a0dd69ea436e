//! Blob key validation.
//!
//! Keys look like `tenant/<tenant-id>/subject/<subject-id>/media/<uuid>`. They are kept to a
//! conservative alphabet so that the same key is valid, and means the same object, on a
//! local folder and on any S3-compatible server.

use object_store::path::Path;

use crate::BlobError;

/// Longest key accepted, in bytes (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;
/// Longest segment accepted, in bytes (the usual file-name limit).
pub const MAX_SEGMENT_LEN: usize = 255;

fn invalid(key: &str, reason: impl Into<String>) -> BlobError {
    BlobError::InvalidKey {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Checks a key and converts it to an `object_store` path.
pub(crate) fn validate_key(key: &str) -> Result<Path, BlobError> {
    if key.is_empty() {
        return Err(invalid(key, "the key is empty"));
    }
    if key.starts_with('/') {
        return Err(invalid(key, "a key must not start with '/'"));
    }
    if key.ends_with('/') {
        return Err(invalid(key, "a key must not end with '/'"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(invalid(
            key,
            format!("a key is at most {MAX_KEY_LEN} bytes long"),
        ));
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return Err(invalid(key, "empty segment ('//')"));
        }
        if segment == "." || segment == ".." {
            return Err(invalid(key, "'.' and '..' segments are not allowed"));
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return Err(invalid(
                key,
                format!("a segment is at most {MAX_SEGMENT_LEN} bytes long"),
            ));
        }
        if let Some(c) = segment.chars().find(|c| !allowed(*c)) {
            return Err(invalid(
                key,
                format!("character {c:?} is not allowed (use A-Z a-z 0-9 '-' '_' '.' and '/')"),
            ));
        }
    }
    Path::parse(key).map_err(|e| invalid(key, e.to_string()))
}

/// Checks a listing/deletion prefix. One trailing '/' is accepted (`tenant/1/` is the same
/// prefix as `tenant/1`). Returns `None` for the empty prefix (everything).
///
/// Prefixes match whole segments: `tenant/1` covers `tenant/1/x` but not `tenant/10/x`.
pub(crate) fn validate_prefix(prefix: &str) -> Result<Option<Path>, BlobError> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        if prefix.is_empty() {
            return Ok(None);
        }
        return Err(invalid(prefix, "a prefix must not start with '/'"));
    }
    validate_key(trimmed).map(Some).map_err(|e| match e {
        BlobError::InvalidKey { reason, .. } => invalid(prefix, reason),
        other => other,
    })
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_keys() {
        for key in [
            "tenant/t1/subject/s-2/media/0b6f5c1e-8a4e-4c55-9d0a-3c1f3b2a9e10",
            "a",
            "a/b.c/_d-e",
            "x/.hidden",
            "x/a..b",
        ] {
            assert!(validate_key(key).is_ok(), "{key} should be accepted");
        }
    }

    #[test]
    fn rejects_bad_keys_with_a_reason() {
        let long_segment = "a".repeat(MAX_SEGMENT_LEN + 1);
        let long_key = ["abcdefgh"; 200].join("/");
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("/a/b", "start with '/'"),
            ("a/b/", "end with '/'"),
            ("a//b", "empty segment"),
            ("a/../b", "'..'"),
            ("..", "'..'"),
            ("a/./b", "'.'"),
            ("a/b c", "' '"),
            ("a/b%2Fc", "'%'"),
            ("a/\u{e9}", "not allowed"),
            ("a/b\\c", "not allowed"),
            ("a/b#1", "'#'"),
            ("a/b\n", "not allowed"),
            (&long_segment, "segment is at most"),
            (&long_key, "at most 1024"),
        ];
        for (key, needle) in cases {
            match validate_key(key) {
                Err(BlobError::InvalidKey { reason, .. }) => {
                    assert!(
                        reason.contains(needle),
                        "{key:?}: {reason:?} lacks {needle:?}"
                    )
                }
                other => panic!("{key:?} should be rejected, got {other:?}"),
            }
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(validate_prefix("").ok(), Some(None));
        assert_eq!(
            validate_prefix("tenant/1/")
                .ok()
                .flatten()
                .map(|p| p.to_string()),
            Some("tenant/1".to_owned())
        );
        assert!(validate_prefix("/").is_err());
        assert!(validate_prefix("tenant//").is_err());
        assert!(validate_prefix("../x").is_err());
    }
}
