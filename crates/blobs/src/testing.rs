//! Helpers for tests that need a real S3-compatible server.
//!
//! Tests use the server at `STEWARD_TEST_S3_ENDPOINT` (default
//! `http://127.0.0.1:9327`, a `moto` server started by `.ci/start-s3`), each in a
//! fresh bucket. When the server cannot be reached the test is skipped with a
//! notice, except under `CI=true`, where it fails: CI must never pass by skipping.
//!
//! moto does not check request signatures, so plain HTTP requests manage buckets.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const DEFAULT_TEST_ENDPOINT: &str = "http://127.0.0.1:9327";

/// The S3 test server.
#[derive(Debug, Clone)]
pub struct S3TestServer {
    /// `http://host:port`.
    pub endpoint: String,
    host_port: String,
}

impl S3TestServer {
    /// The server named by `STEWARD_TEST_S3_ENDPOINT` (or the default).
    pub fn from_env() -> Result<S3TestServer, String> {
        let endpoint = std::env::var("STEWARD_TEST_S3_ENDPOINT")
            .unwrap_or_else(|_| DEFAULT_TEST_ENDPOINT.to_owned());
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let host_port = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| {
                format!("STEWARD_TEST_S3_ENDPOINT must be http://host:port, not {endpoint}")
            })?
            .to_owned();
        Ok(S3TestServer {
            endpoint,
            host_port,
        })
    }

    /// The server if it answers; `Ok(None)` (after a notice naming `test`) when it
    /// does not, outside CI; an error under `CI=true`.
    pub fn require(test: &str) -> Result<Option<S3TestServer>, String> {
        let server = S3TestServer::from_env()?;
        if server.reachable() {
            return Ok(Some(server));
        }
        let msg = format!(
            "S3 test server not reachable at {}: run .ci/start-s3 (or set STEWARD_TEST_S3_ENDPOINT)",
            server.endpoint
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            return Err(msg);
        }
        eprintln!("SKIPPED {test}: {msg}");
        Ok(None)
    }

    pub fn reachable(&self) -> bool {
        let Ok(mut addrs) = self.host_port.to_socket_addrs() else {
            return false;
        };
        addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
    }

    /// One bodiless request; returns the status and the whole response.
    pub fn request(&self, method: &str, path: &str) -> Result<(u16, String), String> {
        let io = |e: std::io::Error| format!("{method} {path} on {}: {e}", self.endpoint);
        let mut conn = TcpStream::connect(&self.host_port).map_err(io)?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.host_port
        )
        .map_err(io)?;
        let mut response = String::new();
        conn.read_to_string(&mut response).map_err(io)?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, response))
    }

    pub fn create_bucket(&self, bucket: &str) -> Result<(), String> {
        match self.request("PUT", &format!("/{bucket}"))? {
            (200, _) => Ok(()),
            (_, body) => Err(format!("creating bucket {bucket}: {body}")),
        }
    }

    pub fn delete_bucket(&self, bucket: &str) -> Result<(), String> {
        match self.request("DELETE", &format!("/{bucket}"))? {
            (204, _) => Ok(()),
            (_, body) => Err(format!("deleting bucket {bucket}: {body}")),
        }
    }

    /// Multipart uploads started but neither completed nor aborted.
    pub fn pending_uploads(&self, bucket: &str) -> Result<usize, String> {
        match self.request("GET", &format!("/{bucket}?uploads"))? {
            (200, body) => Ok(body.matches("<Upload>").count()),
            (_, body) => Err(body),
        }
    }

    /// A blob store URL for `bucket` under `prefix` (`""` for the bucket's root).
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        let path = if prefix.is_empty() {
            bucket.to_owned()
        } else {
            format!("{bucket}/{prefix}")
        };
        format!(
            "s3://{path}?endpoint={}&region=us-east-1&allow_http=true\
             &access_key_id=test&secret_access_key=test",
            self.endpoint
        )
    }
}

/// A bucket name no other test (or test process) uses.
pub fn unique_bucket() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "steward-test-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}
