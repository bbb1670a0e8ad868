//! The `.env` file beside a compose file, read as Compose reads it: `KEY=value` lines,
//! `export KEY=value`, `#` comments (whole lines, and after an unquoted value), values in
//! single quotes taken as written, in double quotes with `\n`, `\t`, `\"` and `\\` escapes,
//! and variables (`${OTHER}`, `${X:-d}`) in unquoted and double-quoted values replaced from
//! the process's environment and the lines above.

use std::{collections::BTreeMap, path::Path};

use crate::interpolate::interpolate;

/// The variables of the `.env` file at `path`; none when there is no such file.
pub fn read(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, env),
        Err(_) => BTreeMap::new(),
    }
}

/// The variables of `.env` text; `env` is the process's environment.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().to_string();
        let raw = raw.trim();
        let value = if let Some(inner) = quoted(raw, '\'') {
            inner.to_string()
        } else {
            let text = match quoted(raw, '"') {
                Some(inner) => unescape(inner),
                None => strip_comment(raw).to_string(),
            };
            let lookup = |name: &str| env(name).or_else(|| vars.get(name).cloned());
            interpolate(&text, &lookup).map(|i| i.text).unwrap_or(text)
        };
        vars.insert(key, value);
    }
    vars
}

/// What is between a pair of `quote`s around all of `raw` (a comment may follow).
fn quoted(raw: &str, quote: char) -> Option<&str> {
    let rest = raw.strip_prefix(quote)?;
    let end = rest.rfind(quote)?;
    let after = rest[end + 1..].trim();
    (after.is_empty() || after.starts_with('#')).then(|| &rest[..end])
}

/// An unquoted value without its ` # comment`.
fn strip_comment(raw: &str) -> &str {
    match raw.find(" #") {
        Some(at) => raw[..at].trim_end(),
        None => raw,
    }
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_quotes_comments_and_variables_read_as_compose_reads_them() {
        let env = |name: &str| (name == "FROM_ENV").then(|| "e".to_string());
        let vars = parse(
            "# a comment\n\
             PLAIN=value\n\
             export EXPORTED=yes\n\
             SPACED = around \n\
             COMMENTED=value # not this\n\
             HASH=a#b\n\
             SINGLE='${PLAIN} # kept'\n\
             DOUBLE=\"line\\nnext ${PLAIN}\"\n\
             USES=${PLAIN}-${FROM_ENV}-${NOPE:-d}\n\
             EMPTY=\n\
             not a line\n",
            &env,
        );
        let get = |k: &str| vars.get(k).map(String::as_str);
        assert_eq!(get("PLAIN"), Some("value"));
        assert_eq!(get("EXPORTED"), Some("yes"));
        assert_eq!(get("SPACED"), Some("around"));
        assert_eq!(get("COMMENTED"), Some("value"));
        assert_eq!(get("HASH"), Some("a#b"));
        assert_eq!(get("SINGLE"), Some("${PLAIN} # kept"));
        assert_eq!(get("DOUBLE"), Some("line\nnext value"));
        assert_eq!(get("USES"), Some("value-e-d"));
        assert_eq!(get("EMPTY"), Some(""));
        assert_eq!(vars.len(), 9);
    }
}
