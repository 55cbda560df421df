//! The one format of every time the API writes: in answers (`createdAt`),
//! in log lines (`time`) and in the database (`created_at`, migrations).

use chrono::{DateTime, SecondsFormat, Utc};

/// UTC, RFC 3339 with milliseconds and `Z`: `2026-12-04T17:35:02.123Z`.
/// Fixed width, so the text sorts as the time does (SQLite compares it).
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// [`timestamp`] of the current time.
pub fn now() -> String {
    timestamp(Utc::now())
}

#[cfg(test)]
mod tests {
    #[test]
    fn millis_and_zulu_always() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-04T17:35:02Z").unwrap();
        assert_eq!(super::timestamp(t.into()), "2026-12-04T17:35:02.000Z");
    }
}
