//! Timestamps for events, results folders and reports.

use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// Now, as RFC 3339 with milliseconds (UTC).
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

/// Now, as a folder name that sorts by time: `20261122T043819.123Z`.
pub fn now_folder_name() -> String {
    let now = OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}
