//! "Did you mean …?" for a name a user typed that names nothing: one rule for the host and
//! every plugin, so that a typo gets the same help wherever it is made. Since 1.5.
//!
//! A typo changes at most a third of a name (at least one letter), counting a swap of two
//! neighbouring letters as one change (Damerau–Levenshtein). Names whose lengths differ by
//! more are not compared at all, and names longer than [`MAX_SUGGESTED_CHARS`] get no
//! suggestion: the time taken is bounded whatever the input.

/// Longer names are not compared (a pasted paragraph is no typo of a plugin's name).
pub const MAX_SUGGESTED_CHARS: usize = 64;

/// The known name closest to `name`, when close enough to be a typo of it.
pub fn closest<'a, S>(name: &str, known: impl IntoIterator<Item = &'a S>) -> Option<&'a S>
where
    S: AsRef<str> + ?Sized + 'a,
{
    let length = name.chars().count();
    if length > MAX_SUGGESTED_CHARS {
        return None;
    }
    known
        .into_iter()
        .filter_map(|candidate| {
            let k = candidate.as_ref();
            let k_length = k.chars().count();
            let allowed = (k_length / 3).max(1);
            if k_length > MAX_SUGGESTED_CHARS || length.abs_diff(k_length) > allowed {
                return None;
            }
            let distance = strsim::damerau_levenshtein(name, k);
            // A name that shares no letter with the typed one is no typo of it (`x` of `a`),
            // but `bb` may well be of `b`.
            (distance <= allowed && distance < k_length.max(length) && k != name)
                .then_some((distance, candidate))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// ` (did you mean `x`?)` for the closest known name, or nothing: ready to append to a
/// message that says `name` names nothing.
pub fn did_you_mean<'a, S>(name: &str, known: impl IntoIterator<Item = &'a S>) -> String
where
    S: AsRef<str> + ?Sized + 'a,
{
    closest(name, known)
        .map(|k| format!(" (did you mean `{}`?)", k.as_ref()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_names() {
        let known = ["strace", "memcheck", "json", "localhost", "a"];
        assert_eq!(closest("strac", &known), Some(&"strace"));
        assert_eq!(closest("sttrace", &known), Some(&"strace"));
        assert_eq!(closest("memchekc", &known), Some(&"memcheck"));
        assert_eq!(closest("jsno", &known), Some(&"json"));
        assert_eq!(closest("localhots", &known), Some(&"localhost"));
        assert_eq!(closest("docker", &known), None);
        assert_eq!(closest("b", &known), None);
        assert_eq!(closest("aa", &known), Some(&"a"));
        assert_eq!(closest(&"x".repeat(1000), &known), None);
        assert_eq!(did_you_mean("jsn", &known), " (did you mean `json`?)");
        assert_eq!(did_you_mean("xml", &known), "");
        // Owned names and `str`s alike.
        let owned = vec!["client".to_string(), "server".to_string()];
        assert_eq!(
            closest("clinet", &owned).map(String::as_str),
            Some("client")
        );
        assert_eq!(
            closest::<str>("sever", ["server", "client"]),
            Some("server")
        );
    }
}
