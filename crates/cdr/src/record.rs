//! The parsed record, shared by every source format.

use std::fmt;

use sha2::{Digest, Sha256};

/// Where a [`CallRecord`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Asterisk `cdr_csv` (`Master.csv`).
    AsteriskCsv,
    /// FreeSWITCH `mod_json_cdr`.
    FreeswitchJson,
    /// FreeSWITCH `mod_xml_cdr`.
    FreeswitchXml,
    /// Submitted through Steward's API (built by the caller, not by this crate).
    Api,
}

impl Format {
    /// A short stable name: `asterisk-csv`, `freeswitch-json`, `freeswitch-xml`, `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::AsteriskCsv => "asterisk-csv",
            Format::FreeswitchJson => "freeswitch-json",
            Format::FreeswitchXml => "freeswitch-xml",
            Format::Api => "api",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the call (leg) ended, in Asterisk's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// `NO ANSWER`.
    NoAnswer,
    /// `FAILED`.
    Failed,
    /// `BUSY`.
    Busy,
    /// `ANSWERED`.
    Answered,
    /// `CONGESTION`.
    Congestion,
    /// `CANCEL`.
    Cancel,
    /// `UNKNOWN`, or a FreeSWITCH hangup cause this crate does not know.
    Unknown,
}

impl Disposition {
    /// All values, in Asterisk's order.
    pub const ALL: [Disposition; 7] = [
        Disposition::NoAnswer,
        Disposition::Failed,
        Disposition::Busy,
        Disposition::Answered,
        Disposition::Congestion,
        Disposition::Cancel,
        Disposition::Unknown,
    ];

    /// The word `cdr_csv` writes (`NO ANSWER`, `ANSWERED`, ...).
    pub fn as_asterisk(self) -> &'static str {
        match self {
            Disposition::NoAnswer => "NO ANSWER",
            Disposition::Failed => "FAILED",
            Disposition::Busy => "BUSY",
            Disposition::Answered => "ANSWERED",
            Disposition::Congestion => "CONGESTION",
            Disposition::Cancel => "CANCEL",
            Disposition::Unknown => "UNKNOWN",
        }
    }

    /// Parses the word `cdr_csv` writes; exact, case-sensitive as Asterisk writes it.
    pub fn from_asterisk(word: &[u8]) -> Option<Disposition> {
        Disposition::ALL
            .into_iter()
            .find(|d| d.as_asterisk().as_bytes() == word)
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_asterisk())
    }
}

/// One call leg, as a PBX recorded it.
///
/// Text the PBX controls and that may identify a person (numbers, names, dialled data) is
/// kept as the raw bytes it wrote; other text is UTF-8 (invalid bytes replaced by U+FFFD).
/// An empty field in the source is `None`.
///
/// ## De-duplication
/// The ingest's key for a record is `(leg_id, raw_hash, occurrence)`: re-sending the same
/// file yields the same keys (adds nothing), two different rows for legs of one call (even
/// with the same `uniqueid`) differ in `raw_hash`, and byte-identical rows that follow one
/// another (which real `Master.csv` files contain, e.g. the pseudonymised
/// `report-generator-mockdata.csv`) differ in `occurrence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The source format.
    pub source_format: Format,
    /// 1-based line where the record starts (CSV row, JSON object, `<cdr>` element).
    pub line: u64,
    /// Asterisk `uniqueid` / FreeSWITCH `uuid`.
    pub leg_id: Option<String>,
    /// Asterisk `linkedid` / FreeSWITCH `call_uuid` (else `bridge_uuid`, `last_bridge_to`).
    pub linked_id: Option<String>,
    /// Asterisk `accountcode` / FreeSWITCH `accountcode`.
    pub account_code: Option<String>,
    /// Calling number as written: Asterisk `src` / FreeSWITCH `caller_id_number`.
    pub caller_raw: Vec<u8>,
    /// Calling name: the quoted part of Asterisk's `clid` (`"Name" <num>`) / FreeSWITCH
    /// `caller_id_name`.
    pub caller_name_raw: Option<Vec<u8>>,
    /// Whole caller ID as written: Asterisk `clid` / FreeSWITCH `caller_id`. Kept so that
    /// [`write_asterisk_csv`](crate::write_asterisk_csv) reproduces the row: its number part
    /// can differ from `src`.
    pub clid_raw: Option<Vec<u8>>,
    /// Called number as written: Asterisk `dst` / FreeSWITCH `destination_number`.
    pub callee_raw: Vec<u8>,
    /// Dialplan context (`dcontext`).
    pub context: Option<String>,
    /// Calling channel.
    pub channel: Option<String>,
    /// Called (bridged) channel.
    pub dst_channel: Option<String>,
    /// Last dialplan application.
    pub last_app: Option<String>,
    /// Its argument, raw (often contains dialled numbers).
    pub last_data: Option<Vec<u8>>,
    /// Start, Unix seconds UTC.
    pub start: i64,
    /// Answer, Unix seconds UTC; `None` when the leg was not answered.
    pub answer: Option<i64>,
    /// End, Unix seconds UTC.
    pub end: i64,
    /// Seconds from start to end, as the PBX computed it.
    pub duration_secs: i64,
    /// Billable seconds (answer to end), as the PBX computed it.
    pub billsec: i64,
    /// How the leg ended.
    pub disposition: Disposition,
    /// FreeSWITCH `hangup_cause` (`NORMAL_CLEARING`, ...); `None` for Asterisk.
    pub hangup_cause: Option<String>,
    /// Asterisk AMA flags: `OMIT`, `BILLING`, `DOCUMENTATION` or `Unknown`.
    pub ama_flags: Option<String>,
    /// Asterisk `userfield`, raw.
    pub user_field: Option<Vec<u8>>,
    /// Asterisk `peeraccount`.
    pub peer_account: Option<String>,
    /// Asterisk `sequence`.
    pub sequence: Option<i64>,
    /// Remote signalling address (FreeSWITCH `network_addr`, `sip_received_ip`, ...).
    pub ip_address: Option<String>,
    /// Serving/visited mobile network as `MCC-MNC` (e.g. `510-55`), from a SIP
    /// `P-Visited-Network-ID` or the cell identity in `P-Access-Network-Info`. Only the
    /// network is kept: the cell (location) part is dropped.
    pub roaming_network: Option<String>,
    /// RTP audio media bytes, in plus out, when the PBX reported them.
    pub data_bytes: Option<i64>,
    /// `inbound` / `outbound` when known.
    pub direction: Option<String>,
    /// For Asterisk rows: how the source row was laid out, which
    /// [`write_asterisk_csv`](crate::write_asterisk_csv) reproduces. `None` otherwise.
    pub csv_layout: Option<CsvLayout>,
    /// SHA-256 of the record's raw bytes: the CSV row without its line ending, the JSON
    /// object from `{` to `}`, the XML element from `<cdr` to `</cdr>`.
    pub raw_hash: [u8; 32],
    /// How many records immediately before this one, in the same stream, had the same raw
    /// bytes (0 for most records). Completes the de-duplication key; see above.
    pub occurrence: u32,
}

/// How an Asterisk `cdr_csv` row was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CsvLayout {
    /// Number of columns: 16 to 21 (see [`asterisk_csv`](crate::asterisk_csv)).
    pub columns: u8,
    /// An unset time (the answer time of an unanswered call) was written as `""`, not as
    /// an empty unquoted field. `cdr_csv` writes the latter; some files (among them
    /// `report-generator-mockdata.csv`) have the former.
    pub quoted_empty_time: bool,
}

/// SHA-256 of `raw`, as stored in [`CallRecord::raw_hash`].
pub fn raw_hash(raw: &[u8]) -> [u8; 32] {
    Sha256::digest(raw).into()
}

/// Numbers consecutive byte-identical records (see [`CallRecord::occurrence`]).
#[derive(Debug, Default)]
pub(crate) struct Runs {
    last: Option<[u8; 32]>,
    count: u32,
}

impl Runs {
    /// Sets `record.occurrence` from the records seen before it.
    pub(crate) fn number(&mut self, record: &mut CallRecord) {
        if self.last == Some(record.raw_hash) {
            self.count = self.count.saturating_add(1);
        } else {
            self.last = Some(record.raw_hash);
            self.count = 0;
        }
        record.occurrence = self.count;
    }
}

/// Text field: `None` when empty, lossy UTF-8 otherwise.
pub(crate) fn text(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// Raw byte field: `None` when empty.
pub(crate) fn bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.is_empty() {
        None
    } else {
        Some(bytes.to_vec())
    }
}

/// The name in a caller ID written as `"Name" <number>`, `Name <number>` or a bare name.
/// A bare number (or nothing) has no name; an empty quoted name (`"" <number>`) is `None`.
pub(crate) fn name_from_clid(clid: &[u8]) -> Option<Vec<u8>> {
    let clid = clid.trim_ascii();
    if clid.ends_with(b">")
        && let Some(lt) = clid.iter().rposition(|&b| b == b'<')
    {
        let name = clid.get(..lt).unwrap_or_default().trim_ascii();
        let name = name
            .strip_prefix(b"\"")
            .and_then(|n| n.strip_suffix(b"\""))
            .unwrap_or(name);
        return bytes(name);
    }
    let looks_like_number = clid
        .iter()
        .all(|b| b.is_ascii_digit() || b"+*#-(). ".contains(b));
    if looks_like_number { None } else { bytes(clid) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clid_names() {
        assert_eq!(
            name_from_clid(b"\"Test User\" <test>"),
            Some(b"Test User".to_vec())
        );
        assert_eq!(name_from_clid(b"\"\" <791-445-9811>"), None);
        assert_eq!(name_from_clid(b"Bob <100>"), Some(b"Bob".to_vec()));
        assert_eq!(name_from_clid(b"+44 20 7946 0000"), None);
        assert_eq!(name_from_clid(b""), None);
        assert_eq!(name_from_clid(b"Reception"), Some(b"Reception".to_vec()));
    }

    #[test]
    fn dispositions_round_trip() {
        for d in Disposition::ALL {
            assert_eq!(
                Disposition::from_asterisk(d.as_asterisk().as_bytes()),
                Some(d)
            );
        }
        assert_eq!(Disposition::from_asterisk(b"answered"), None);
    }
}
