//! FreeSWITCH CDRs (`mod_json_cdr`, `mod_xml_cdr`): the mapping both formats share, documented
//! in the crate docs.

pub mod json;
pub mod xml;

use std::collections::HashMap;

use crate::error::RowError;
use crate::record::{CallRecord, Disposition, Format, bytes, name_from_clid, raw_hash, text};

/// Bytes `switch_url_encode` escapes, apart from `%` itself.
const URL_UNSAFE: &[u8] = b"\r\n #&+:;<=>?@[\\]^`{|}\"";

/// One callflow entry: the profile index and the fields we read.
#[derive(Debug, Default)]
pub(crate) struct Callflow {
    pub index: Option<i64>,
    pub profile: HashMap<String, Vec<u8>>,
    pub times: HashMap<String, Vec<u8>>,
}

impl Callflow {
    /// Whether `self` is the current profile rather than `than` (highest index wins, the
    /// first in document order on a tie).
    pub fn newer(&self, than: &Callflow) -> bool {
        self.index > than.index
    }
}

/// The parts of one FreeSWITCH CDR the mapping reads.
#[derive(Debug, Default)]
pub(crate) struct FsCdr {
    /// `variables`, as written (possibly URL-encoded).
    pub vars: HashMap<String, Vec<u8>>,
    /// The current callflow entry.
    pub callflow: Option<Callflow>,
    /// `channel_data/direction`.
    pub channel_direction: Option<Vec<u8>>,
}

impl FsCdr {
    /// Keeps `candidate` if it is the current profile.
    pub fn offer_callflow(&mut self, candidate: Callflow) {
        match &self.callflow {
            Some(current) if !candidate.newer(current) => {}
            _ => self.callflow = Some(candidate),
        }
    }
}

/// Maps a FreeSWITCH hangup cause to an Asterisk disposition.
///
/// | leg | cause | disposition |
/// |---|---|---|
/// | answered (answer time set or `billsec` > 0) | any | `Answered` |
/// | not answered | `NORMAL_CLEARING`, `NO_ANSWER`, `NO_USER_RESPONSE`, `ALLOTTED_TIMEOUT`, `LOSE_RACE`, `PICKED_OFF` | `NoAnswer` |
/// | not answered | `ORIGINATOR_CANCEL` | `Cancel` |
/// | not answered | `USER_BUSY` | `Busy` |
/// | not answered | `NORMAL_CIRCUIT_CONGESTION`, `SWITCH_CONGESTION` | `Congestion` |
/// | not answered | missing, empty, `NONE`, or not a cause name (`A_Z_0_9`) | `Unknown` |
/// | not answered | any other cause (`CALL_REJECTED`, `UNALLOCATED_NUMBER`, `NO_ROUTE_DESTINATION`, `SUBSCRIBER_ABSENT`, `RECOVERY_ON_TIMER_EXPIRE`, ...) | `Failed` |
pub fn disposition_from_hangup_cause(cause: Option<&str>, answered: bool) -> Disposition {
    if answered {
        return Disposition::Answered;
    }
    let cause = cause.unwrap_or_default().trim();
    match cause {
        "NORMAL_CLEARING" | "NO_ANSWER" | "NO_USER_RESPONSE" | "ALLOTTED_TIMEOUT" | "LOSE_RACE"
        | "PICKED_OFF" => Disposition::NoAnswer,
        "ORIGINATOR_CANCEL" => Disposition::Cancel,
        "USER_BUSY" => Disposition::Busy,
        "NORMAL_CIRCUIT_CONGESTION" | "SWITCH_CONGESTION" => Disposition::Congestion,
        "" | "NONE" => Disposition::Unknown,
        other
            if other
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
        {
            Disposition::Failed
        }
        _ => Disposition::Unknown,
    }
}

/// The mobile network (`MCC-MNC`, e.g. `510-55`) of the cell named in a SIP
/// `P-Access-Network-Info` header value (3GPP TS 24.229), e.g.
/// `3GPP-GERAN; cgi-3gpp=5105503e8000a`.
///
/// Reads `cgi-3gpp` (GERAN: MCC, MNC, 4 hex LAC, 4 hex CI) and `utran-cell-id-3gpp` (UTRAN
/// and E-UTRAN: 4 hex LAC/TAC and 7 hex cell id; NR: 6 hex TAC and 9 hex cell id); the MNC
/// length (2 or 3 digits) follows from the total length. The location and cell parts are
/// not returned.
pub fn plmn_from_access_network_info(value: &str) -> Option<String> {
    let mut parts = value.split(';');
    let access_type = parts.next()?.trim().to_ascii_uppercase();
    for part in parts {
        let Some((name, cell)) = part.split_once('=') else {
            continue;
        };
        let cell = cell.trim().trim_matches('"');
        let tail = match name.trim().to_ascii_lowercase().as_str() {
            "cgi-3gpp" => 8,
            "utran-cell-id-3gpp" if access_type.contains("NR") => 15,
            "utran-cell-id-3gpp" => 11,
            _ => continue,
        };
        let mnc_len = cell.len().checked_sub(3 + tail)?;
        if !(2..=3).contains(&mnc_len) {
            return None;
        }
        let (plmn, rest) = cell.split_at_checked(3 + mnc_len)?;
        let (mcc, mnc) = plmn.split_at_checked(3)?;
        if !plmn.bytes().all(|b| b.is_ascii_digit()) || !rest.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        return Some(format!("{mcc}-{mnc}"));
    }
    None
}

/// Whether the variable values look URL-encoded by `switch_url_encode` (see module docs).
fn looks_url_encoded<'a>(values: impl Iterator<Item = &'a Vec<u8>>) -> bool {
    let mut escapes = false;
    for value in values {
        for (i, &b) in value.iter().enumerate() {
            if !(0x20..=0x7e).contains(&b) || URL_UNSAFE.contains(&b) {
                return false;
            }
            if b == b'%'
                && value
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
            {
                escapes = true;
            }
        }
    }
    escapes
}

fn url_decode(value: &[u8]) -> Vec<u8> {
    percent_encoding::percent_decode(value).collect()
}

/// What a value looks like, for error messages (never the value itself).
fn describe(v: &[u8]) -> String {
    if v.is_empty() {
        "is empty".into()
    } else {
        format!("holds {} bytes of text", v.len())
    }
}

/// Builds the record; `raw` is the record's source bytes (for the hash).
pub(crate) fn to_record(
    cdr: FsCdr,
    format: Format,
    line: u64,
    raw: &[u8],
) -> Result<CallRecord, RowError> {
    let FsCdr {
        vars,
        callflow,
        channel_direction,
    } = cdr;
    let vars: HashMap<String, Vec<u8>> = if looks_url_encoded(vars.values()) {
        vars.into_iter().map(|(k, v)| (k, url_decode(&v))).collect()
    } else {
        vars
    };
    let callflow = callflow.unwrap_or_default();
    let var = |k: &str| vars.get(k).map(Vec::as_slice).filter(|v| !v.is_empty());
    let prof = |k: &str| {
        callflow
            .profile
            .get(k)
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    };

    // Integers are written as strings; a present but malformed one is an error for the
    // fields the record needs (times, durations).
    let int = |k: &str, v: Option<&[u8]>| -> Result<Option<i64>, RowError> {
        let Some(v) = v else { return Ok(None) };
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| {
                RowError::new(
                    line,
                    format!("{k} should be an integer but {}", describe(v)),
                )
            })
    };
    // An instant: epoch seconds, else epoch microseconds, else callflow time (µs); 0 = unset.
    let instant = |secs: &str, usecs: &str, flow: &str| -> Result<Option<i64>, RowError> {
        let nonzero = |v: Option<i64>| v.filter(|&t| t != 0);
        if let Some(t) = nonzero(int(&format!("variables.{secs}"), var(secs))?) {
            return Ok(Some(t));
        }
        if let Some(t) = nonzero(int(&format!("variables.{usecs}"), var(usecs))?) {
            return Ok(Some(t.div_euclid(1_000_000)));
        }
        let flow_value = callflow.times.get(flow).map(Vec::as_slice);
        Ok(nonzero(int(&format!("callflow times.{flow}"), flow_value)?)
            .map(|t| t.div_euclid(1_000_000)))
    };

    let start = instant("start_epoch", "start_uepoch", "created_time")?.ok_or_else(|| {
        RowError::new(
            line,
            "no start time (variables.start_epoch is missing or 0)",
        )
    })?;
    let answer = instant("answer_epoch", "answer_uepoch", "answered_time")?;
    // Durations the switch wrote are seconds; a negative one is not.
    let seconds = |k: &str| -> Result<Option<i64>, RowError> {
        match int(k, var(k.trim_start_matches("variables.")))? {
            Some(n) if n < 0 => Err(RowError::new(
                line,
                format!("{k} should be a number of seconds but is negative"),
            )),
            other => Ok(other),
        }
    };
    let duration = seconds("variables.duration")?;
    let end = match (instant("end_epoch", "end_uepoch", "hangup_time")?, duration) {
        (Some(end), _) => end,
        (None, Some(duration)) => start.checked_add(duration).ok_or_else(|| {
            RowError::new(
                line,
                "the start time plus variables.duration is out of range",
            )
        })?,
        (None, None) => {
            return Err(RowError::new(
                line,
                "no end time (variables.end_epoch is missing or 0, and no duration)",
            ));
        }
    };
    if end < start {
        return Err(RowError::new(
            line,
            "the end time is before the start time (variables.end_epoch < start_epoch)",
        ));
    }
    // Cannot overflow: end >= start.
    let duration_secs = duration.unwrap_or(end.saturating_sub(start));
    // An answer after the end (clocks disagreeing) bills nothing rather than a negative time.
    let billsec = seconds("variables.billsec")?
        .unwrap_or_else(|| answer.map_or(0, |a| end.saturating_sub(a).max(0)));

    let hangup_cause = var("hangup_cause").and_then(text);
    let disposition =
        disposition_from_hangup_cause(hangup_cause.as_deref(), answer.is_some() || billsec > 0);

    // Media counters are informative: a malformed one is left out rather than losing the call.
    let counter = |k: &str| {
        var(k)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|n| *n >= 0)
    };
    let data_bytes = match (
        counter("rtp_audio_in_media_bytes"),
        counter("rtp_audio_out_media_bytes"),
    ) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    };

    let roaming_network = header_var(&vars, "p-visited-network-id")
        .map(|v| {
            String::from_utf8_lossy(v)
                .trim()
                .trim_matches('"')
                .to_owned()
        })
        .filter(|v| !v.is_empty())
        .or_else(|| {
            header_var(&vars, "p-access-network-info")
                .and_then(|v| plmn_from_access_network_info(&String::from_utf8_lossy(v)))
        });

    let caller_name = first(&[
        var("caller_id_name"),
        prof("caller_id_name"),
        var("sip_from_display"),
    ]);
    let clid = var("caller_id");

    Ok(CallRecord {
        source_format: format,
        line,
        leg_id: first(&[var("uuid"), prof("uuid")]).and_then(text),
        linked_id: first(&[var("call_uuid"), var("bridge_uuid"), var("last_bridge_to")])
            .and_then(text),
        account_code: var("accountcode").and_then(text),
        caller_raw: first(&[
            var("caller_id_number"),
            prof("caller_id_number"),
            var("sip_from_user"),
            var("ani"),
        ])
        .unwrap_or_default()
        .to_vec(),
        caller_name_raw: caller_name
            .map(<[u8]>::to_vec)
            .or_else(|| clid.and_then(name_from_clid)),
        clid_raw: clid.and_then(bytes),
        callee_raw: first(&[
            var("destination_number"),
            prof("destination_number"),
            var("sip_req_user"),
            var("sip_to_user"),
        ])
        .unwrap_or_default()
        .to_vec(),
        context: first(&[prof("context"), var("context")]).and_then(text),
        channel: first(&[var("channel_name"), prof("chan_name")]).and_then(text),
        dst_channel: first(&[var("bridge_channel"), var("last_bridge_channel")]).and_then(text),
        last_app: first(&[var("last_app"), var("current_application")]).and_then(text),
        last_data: first(&[var("last_arg"), var("current_application_data")]).and_then(bytes),
        start,
        answer,
        end,
        duration_secs,
        billsec,
        disposition,
        hangup_cause,
        ama_flags: None,
        user_field: None,
        peer_account: None,
        sequence: None,
        ip_address: first(&[
            prof("network_addr"),
            var("network_addr"),
            var("sip_received_ip"),
            var("sip_network_ip"),
        ])
        .and_then(text),
        roaming_network,
        data_bytes,
        direction: first(&[
            var("direction"),
            var("call_direction"),
            channel_direction.as_deref().filter(|v| !v.is_empty()),
        ])
        .and_then(text),
        csv_layout: None,
        raw_hash: raw_hash(raw),
        occurrence: 0,
    })
}

/// The first source that has a value.
fn first<'a>(sources: &[Option<&'a [u8]>]) -> Option<&'a [u8]> {
    sources.iter().flatten().next().copied()
}

/// A variable holding a received SIP header, whatever FreeSWITCH prefixed it with
/// (`sip_h_P-Access-Network-Info`, `sip_P-Access-Network-Info`, ...).
fn header_var<'a>(vars: &'a HashMap<String, Vec<u8>>, header: &str) -> Option<&'a [u8]> {
    let mut matches: Vec<(&String, &Vec<u8>)> = vars
        .iter()
        .filter(|(k, v)| {
            !v.is_empty()
                && k.len() >= header.len()
                && k.get(k.len() - header.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(header))
        })
        .collect();
    // Deterministic whatever the map's order.
    matches.sort();
    matches.first().map(|(_, v)| v.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plmn_from_cells() {
        assert_eq!(
            plmn_from_access_network_info("3GPP-GERAN; cgi-3gpp=5105503e8000a").as_deref(),
            Some("510-55")
        );
        assert_eq!(
            plmn_from_access_network_info("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=2620100FA0001234")
                .as_deref(),
            Some("262-01")
        );
        assert_eq!(
            plmn_from_access_network_info(
                "3GPP-UTRAN-TDD; utran-cell-id-3gpp=310260ABCD1234567; \"x\""
            )
            .as_deref(),
            Some("310-260")
        );
        assert_eq!(
            plmn_from_access_network_info("3GPP-NR-FDD; utran-cell-id-3gpp=23415001234123456789")
                .as_deref(),
            Some("234-15")
        );
        assert_eq!(
            plmn_from_access_network_info("IEEE-802.11; i-wlan-node-id=ffffff"),
            None
        );
        assert_eq!(
            plmn_from_access_network_info("3GPP-GERAN; cgi-3gpp=51"),
            None
        );
        assert_eq!(
            plmn_from_access_network_info("3GPP-GERAN; cgi-3gpp=5X05503e8000a"),
            None
        );
    }

    #[test]
    fn hangup_causes() {
        use Disposition::*;
        let d = |c: &str, answered| disposition_from_hangup_cause(Some(c), answered);
        assert_eq!(d("NORMAL_CLEARING", true), Answered);
        assert_eq!(d("NORMAL_CLEARING", false), NoAnswer);
        assert_eq!(d("NO_ANSWER", false), NoAnswer);
        assert_eq!(d("ORIGINATOR_CANCEL", false), Cancel);
        assert_eq!(d("USER_BUSY", false), Busy);
        assert_eq!(d("SWITCH_CONGESTION", false), Congestion);
        assert_eq!(d("CALL_REJECTED", false), Failed);
        assert_eq!(d("RECOVERY_ON_TIMER_EXPIRE", false), Failed);
        assert_eq!(d("NONE", false), Unknown);
        assert_eq!(d("weird value", false), Unknown);
        assert_eq!(disposition_from_hangup_cause(None, false), Unknown);
    }

    #[test]
    fn url_encoding_detection() {
        let enc = [b"IMSI1%40127.0.0.1".to_vec(), b"GSM".to_vec()];
        assert!(looks_url_encoded(enc.iter()));
        let raw = [b"1001@10.10.10.204".to_vec(), b"100%41".to_vec()];
        assert!(!looks_url_encoded(raw.iter()));
        let plain = [b"1001".to_vec()];
        assert!(!looks_url_encoded(plain.iter()));
        assert_eq!(url_decode(b"%2B44+20%20x%zz"), b"+44+20 x%zz");
    }
}
