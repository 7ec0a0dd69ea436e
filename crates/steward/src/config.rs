//! Every setting Steward reads, with its default, in one place. The CLI fills a
//! [`Settings`] from flags and `STEWARD_*` environment variables (see
//! `docs/CONFIGURATION.md`); nothing else reads the environment.

use std::path::PathBuf;

#[derive(Clone)]
pub struct Settings {
    /// Holds the embedded database, the key store, the master key file and the
    /// local blob folder. Default `./steward-data`.
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite file.
    pub database_url: Option<String>,
    /// PostgreSQL schema for Steward's tables (default: the connection's own).
    pub database_schema: Option<String>,
    /// Where per-subject keys live: an SQLite path or a `postgres://` URL. Default:
    /// `<data_dir>/keys/keys.sqlite`, or for PostgreSQL the same server in schema
    /// `steward_keys` (or `<schema>_keys`).
    pub key_store: Option<String>,
    /// The master key itself (base64 or hex), typically from `STEWARD_MASTER_KEY`.
    pub master_key: Option<String>,
    /// File holding the master key; default `<data_dir>/master.key`, created on
    /// first start when neither this nor `master_key` is given.
    pub master_key_file: Option<PathBuf>,
    /// Blob store URL: `s3://bucket/prefix?endpoint=…`, `file:///path`; default
    /// `<data_dir>/blobs`.
    pub blob_url: Option<String>,
    /// Policy file; default: the shipped `policy/default.toml`, compiled in.
    pub policy_file: Option<PathBuf>,
    /// Region for phone numbers written without a country code (ISO 3166, "GB").
    pub default_region: String,
    /// Lifetime of a login session, in seconds.
    pub session_ttl_secs: i64,
    /// Largest photo or video a user may upload, in bytes.
    pub max_media_bytes: u64,
    /// Largest call recording that may be uploaded, in bytes.
    pub max_recording_bytes: u64,
    /// Mark the console's session cookie `Secure` on every response, for a server
    /// behind a TLS-terminating proxy. Without it the cookie is `Secure` only when
    /// the request says it came over TLS (`X-Forwarded-Proto: https`).
    pub secure_cookies: bool,
    /// Days a produced access bundle stays downloadable (the subject's copy in the
    /// blob store); then it is deleted.
    pub bundle_keep_days: i64,
    /// The largest chat message body accepted, in bytes of UTF-8.
    pub chat_max_message_bytes: usize,
    /// The largest file sent in chat, in bytes.
    pub chat_max_attachment_bytes: u64,
    /// On PostgreSQL, whether a chat batch's commit waits for the server's log
    /// to reach the disk before the messages are acknowledged and pushed (the
    /// default, `true`). `false` commits chat batches with `SET LOCAL
    /// synchronous_commit = off`: lower latency, and a crash of the *database
    /// server* may lose the last moments of acknowledged chat (PostgreSQL
    /// flushes within three times `wal_writer_delay`, 600 ms by default); the
    /// database stays consistent. Every other write keeps waiting for the log.
    /// SQLite ignores it: its WAL mode with `synchronous = NORMAL` never waits
    /// for the disk at commit.
    pub chat_synchronous_commit: bool,
    /// PostgreSQL: push chat through the broker to every server process
    /// (`true`, the default). `false` pushes to this process's sockets only,
    /// as on SQLite: right for exactly one server, wrong for several. Not a
    /// command-line flag: the chat benchmark uses it as the same-run baseline
    /// of what the broker costs.
    pub chat_fanout: bool,
}

/// The default recording limit: 256 MiB, an hour of 16 kHz 16-bit stereo WAV
/// (230 MB; narrowband mono is 58 MB an hour), with room to spare.
pub const DEFAULT_MAX_RECORDING_BYTES: u64 = 256 * 1024 * 1024;

/// Default of [`Settings::chat_max_message_bytes`]: 16 KiB.
pub const CHAT_MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Default of [`Settings::chat_max_attachment_bytes`]: 25 MiB.
pub const CHAT_MAX_ATTACHMENT_BYTES: u64 = 25 * 1024 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("steward-data"),
            database_url: None,
            database_schema: None,
            key_store: None,
            master_key: None,
            master_key_file: None,
            blob_url: None,
            policy_file: None,
            default_region: "GB".to_owned(),
            session_ttl_secs: 12 * 3600,
            max_media_bytes: 100 * 1024 * 1024,
            max_recording_bytes: DEFAULT_MAX_RECORDING_BYTES,
            secure_cookies: false,
            bundle_keep_days: 30,
            chat_max_message_bytes: CHAT_MAX_MESSAGE_BYTES,
            chat_max_attachment_bytes: CHAT_MAX_ATTACHMENT_BYTES,
            chat_synchronous_commit: true,
            chat_fanout: true,
        }
    }
}

/// Settings print without secrets: the master key is never shown, and URLs lose
/// their passwords.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("database_schema", &self.database_schema)
            .field("key_store", &self.key_store.as_deref().map(redact_url))
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .field("master_key_file", &self.master_key_file)
            .field("blob_url", &self.blob_url.as_deref().map(redact_url))
            .field("policy_file", &self.policy_file)
            .field("default_region", &self.default_region)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("max_media_bytes", &self.max_media_bytes)
            .field("max_recording_bytes", &self.max_recording_bytes)
            .field("secure_cookies", &self.secure_cookies)
            .field("bundle_keep_days", &self.bundle_keep_days)
            .field("chat_max_message_bytes", &self.chat_max_message_bytes)
            .field("chat_max_attachment_bytes", &self.chat_max_attachment_bytes)
            .field("chat_synchronous_commit", &self.chat_synchronous_commit)
            .field("chat_fanout", &self.chat_fanout)
            .finish()
    }
}

/// Removes a password from `scheme://user:password@host/…` and drops the query
/// string (which may carry credentials for S3).
pub fn redact_url(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &base[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &base[..s + 3], user, &base[at..])
        }
        _ => base.to_owned(),
    }
}

impl Settings {
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("steward.sqlite")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let s = Settings {
            database_url: Some("postgres://app:hunter2@db/steward".into()),
            master_key: Some("c2VjcmV0LWtleQ==".into()),
            blob_url: Some("s3://b/p?secret_access_key=xyz".into()),
            ..Settings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("c2VjcmV0LWtleQ"), "{shown}");
        assert!(!shown.contains("xyz"), "{shown}");
        assert!(shown.contains("postgres://app:***@db/steward"), "{shown}");
    }
}
