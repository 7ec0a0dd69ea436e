//! steward-cdr: streaming parsers for call detail records (CDRs) as PBXs write them.
//!
//! * [`asterisk_csv`]: Asterisk `cdr_csv` (`Master.csv`), 16 to 21 columns, one row per leg;
//!   [`write_asterisk_csv`] writes the same layout back byte for byte.
//! * [`freeswitch_json`]: FreeSWITCH `mod_json_cdr` (1.2 to current): one object per file, or
//!   a stream of objects (concatenated, one per line, or inside a top-level array).
//! * [`freeswitch_xml`]: FreeSWITCH `mod_xml_cdr`: one or more `<cdr>` documents.
//! * [`detect`] names the format from a file's first bytes; [`parse_file`] and [`parse_reader`]
//!   sniff and stream in one call.
//!
//! Every parser is an iterator of `Result<CallRecord, RowError>` that holds one record at a
//! time (plus a bounded read buffer): memory does not grow with the file. A bad row is a
//! [`RowError`] with its line and the parser carries on with the next row; only a file whose
//! layout is not the one the parser reads at all is refused, with a [`FormatError`].
//!
//! What this crate does not do: phone numbers are kept as the bytes the PBX wrote
//! (`*_raw` fields); normalising them (E.164) and de-duplicating records are the ingest's job.
//!
//! Error messages never quote field values (they are personal data): they say which column
//! was wrong and what kind of value it held ("an integer", "12 bytes of text").
//!
//! ## FreeSWITCH field mapping
//!
//! Both modules dump the channel's `variables`, the `callflow` (one entry per caller
//! profile: transfers add entries, the current one has the highest `profile_index`) and
//! `channel_data`. The mapping to [`CallRecord`] reads, first found wins ("profile" is the
//! current callflow entry's `caller_profile`):
//!
//! | field | sources |
//! |---|---|
//! | `leg_id` | `uuid`, profile `uuid` |
//! | `linked_id` | `call_uuid`, `bridge_uuid`, `last_bridge_to` |
//! | `caller_raw` | `caller_id_number`, profile `caller_id_number`, `sip_from_user`, `ani` |
//! | `caller_name_raw` | `caller_id_name`, profile `caller_id_name`, `sip_from_display` |
//! | `clid_raw` | `caller_id` |
//! | `callee_raw` | `destination_number`, profile `destination_number`, `sip_req_user`, `sip_to_user` |
//! | `start`/`answer`/`end` | `*_epoch`, `*_uepoch`, callflow `times` (µs); never the `*_stamp` variables, which are the switch's local time |
//! | `duration_secs`/`billsec` | `duration`/`billsec`, else computed from the times |
//! | `ip_address` | profile `network_addr`, `network_addr`, `sip_received_ip`, `sip_network_ip` |
//! | `data_bytes` | `rtp_audio_in_media_bytes` + `rtp_audio_out_media_bytes` |
//! | `direction` | `direction`, `call_direction`, `channel_data/direction` |
//! | `roaming_network` | `P-Visited-Network-ID` header variable, else the PLMN of the cell in `P-Access-Network-Info` |
//!
//! ### URL encoding
//! Both modules URL-encode variable values by default (`encode-values`; callflow profile
//! values are never encoded), with `switch_url_encode`, which
//! writes `%XX` for control bytes, bytes above `~` and ``\r\n #%&+:;<=>?@[\]^`{|}"`` and never
//! writes `+` for a space. Whether a record's values are encoded is decided per record: they
//! are when no value holds a byte that encoding would have escaped and at least one holds a
//! `%XX` escape. Decoding turns `%XX` into the byte and leaves everything else, including
//! `+`, as it is (a `+` in a value is a literal plus, as in `+44...`).
//!
//! The disposition comes from `hangup_cause` and whether the leg was answered; see
//! [`disposition_from_hangup_cause`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod asterisk;
mod detect;
mod error;
mod freeswitch;
mod record;
mod time;

pub use asterisk::{AsteriskCsv, asterisk_csv, asterisk_csv_checked, write_asterisk_csv};
pub use detect::{Records, SNIFF_BYTES, detect, parse_file, parse_reader};
pub use error::{FormatError, RowError};
pub use freeswitch::json::{FreeswitchJson, freeswitch_json};
pub use freeswitch::xml::{FreeswitchXml, freeswitch_xml};
pub use freeswitch::{disposition_from_hangup_cause, plmn_from_access_network_info};
pub use record::{CallRecord, CsvLayout, Disposition, Format, raw_hash};
pub use time::{format_utc, parse_utc};
