//! Ingest: traffic data arriving in bulk from the systems around Steward.
//!
//! * [`cdr`]: call detail records from PBX files (Asterisk `cdr_csv`, FreeSWITCH
//!   `mod_json_cdr` and `mod_xml_cdr`) and from the JSON API, into `call_records`.
//! * [`parties`]: who a record concerns: the tenant's users by phone number or
//!   extension, everyone else as an `external_party` subject found through a blind index.
//! * [`usage`]: the per-account monthly usage summary for billing.
//!
//! How a file travels, and why it is fast: see `docs/PERFORMANCE.md`.

pub mod cdr;
pub mod parties;
pub mod usage;

pub use cdr::{
    FileReport, IngestReport, NewCallRecord, Options, Progress, Quarantined, RecordsReport,
    ingest_files, ingest_records,
};
pub use parties::set_extension;
pub use usage::{AccountUsage, UsageReport, usage};
