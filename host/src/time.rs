//! Timestamps for events, results folders and reports.

use time::{macros::format_description, OffsetDateTime};

/// Now, as RFC 3339 with exactly three digits of milliseconds (UTC), so that timestamps
/// compare as text in time order (`…26.010Z` before `…26.011Z`; a trimmed `…26.01Z` would
/// sort after it).
pub fn now_rfc3339() -> String {
    rfc3339_millis(OffsetDateTime::now_utc())
}

fn rfc3339_millis(at: OffsetDateTime) -> String {
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_three_digits_and_sort_as_text() {
        let at = time::macros::datetime!(2026-11-29 19:38:26.010 UTC);
        let next = time::macros::datetime!(2026-11-29 19:38:26.011 UTC);
        assert_eq!(rfc3339_millis(at), "2026-11-29T19:38:26.010Z");
        assert!(rfc3339_millis(at) < rfc3339_millis(next));
        let whole = time::macros::datetime!(2026-11-29 19:38:26 UTC);
        assert_eq!(rfc3339_millis(whole), "2026-11-29T19:38:26.000Z");
    }
}
