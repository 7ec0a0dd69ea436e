//! Time as Steward stores it: whole seconds since the Unix epoch (UTC).

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Today's date in UTC: the day requests are dated by when no other day is
/// given (`rights::create` refuses a day after it).
pub fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// RFC 3339 form of a stored timestamp, for humans and JSON.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}
