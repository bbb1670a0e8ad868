//! Variables in compose values, exactly as the Compose Specification defines them: `$VAR`,
//! `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}`,
//! `${VAR:?message}`, `${VAR?message}`, nested (`${A:-${B:-x}}`, `${A?$B}`), and `$$` for a
//! literal `$`. A `$` that starts neither a name nor `${` is kept as it is. Defaults and
//! alternatives are read only when they are used, so a variable named in a default that is
//! not needed is not reported.
//!
//! A variable replaced by nothing because it is unset (and has no default) is not an error
//! (the specification has it replaced by an empty string) but is reported to the caller,
//! which warns: a silent empty string is how a port or an image name goes missing.

/// A value with its variables replaced.
#[derive(Debug, PartialEq, Eq)]
pub struct Interpolated {
    /// The text.
    pub text: String,
    /// The variables that were unset and replaced by an empty string, in order.
    pub unset: Vec<String>,
}

/// Replaces the variables in `text`, looked up with `env`. Errors: a required variable
/// (`?`) that is missing, an unclosed `${`, and a braced form the specification does not
/// have (`${VAR/a/b}`, `${}`).
pub fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, String> {
    let mut unset = Vec::new();
    let text = expand(text, env, &mut unset)?;
    Ok(Interpolated { text, unset })
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.chars().next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let body_and_rest = &after[1..];
                let end = closing_brace(body_and_rest)
                    .ok_or_else(|| format!("`${{` without its closing `}}` in `{text}`"))?;
                out.push_str(&braced(&body_and_rest[..end], env, unset)?);
                rest = &body_and_rest[end + 1..];
            }
            Some(c) if is_name_start(c) => {
                let len = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
                let name = &after[..len];
                match env(name) {
                    Some(value) => out.push_str(&value),
                    None => unset.push(name.to_string()),
                }
                rest = &after[len..];
            }
            // Not a variable: kept as written.
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` that closes a `${` whose body starts `text`: nested `${…}` are
/// skipped, and `$$` is a literal `$` (it opens nothing).
fn closing_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// What is between `${` and `}`.
fn braced(
    body: &str,
    env: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, String> {
    let invalid = || {
        format!(
            "`${{{body}}}` is not a variable the Compose Specification knows (`${{VAR}}`, \
             `${{VAR:-default}}`, `${{VAR-default}}`, `${{VAR:+alt}}`, `${{VAR+alt}}`, \
             `${{VAR:?message}}`, `${{VAR?message}}`)"
        )
    };
    if !body.starts_with(is_name_start) {
        return Err(invalid());
    }
    let len = body.find(|c| !is_name_char(c)).unwrap_or(body.len());
    let (name, op) = body.split_at(len);
    let value = env(name);
    if op.is_empty() {
        return Ok(match value {
            Some(value) => value,
            None => {
                unset.push(name.to_string());
                String::new()
            }
        });
    }
    // `:` makes an empty value count as unset.
    let (colon, op) = match op.strip_prefix(':') {
        Some(op) => (true, op),
        None => (false, op),
    };
    let mut chars = op.chars();
    let kind = chars.next().ok_or_else(invalid)?;
    let arg = chars.as_str();
    let present = match &value {
        Some(v) => !(colon && v.is_empty()),
        None => false,
    };
    match kind {
        '-' if present => Ok(value.unwrap_or_default()),
        '-' => expand(arg, env, unset),
        '+' if present => expand(arg, env, unset),
        '+' => Ok(String::new()),
        '?' if present => Ok(value.unwrap_or_default()),
        '?' => {
            let message = expand(arg, env, unset)?;
            let why = if value.is_some() { "empty" } else { "not set" };
            Err(if message.is_empty() {
                format!("required variable `{name}` is {why}")
            } else {
                format!("required variable `{name}` is {why}: {message}")
            })
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SET=value, EMPTY is set and empty, OTHER=other; everything else is unset.
    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            "OTHER" => Some("other".into()),
            _ => None,
        }
    }

    #[test]
    fn every_form_of_the_specification() {
        // (input, output, variables reported unset)
        let cases: &[(&str, &str, &[&str])] = &[
            ("plain", "plain", &[]),
            ("$SET", "value", &[]),
            ("${SET}", "value", &[]),
            ("a${SET}b$SET.c", "avaluebvalue.c", &[]),
            ("$SET_x", "", &["SET_x"]),
            ("${SET}_x", "value_x", &[]),
            ("$UNSET", "", &["UNSET"]),
            ("${UNSET}", "", &["UNSET"]),
            ("${EMPTY}", "", &[]),
            // Defaults: `:-` for unset or empty, `-` for unset only.
            ("${UNSET:-d}", "d", &[]),
            ("${EMPTY:-d}", "d", &[]),
            ("${SET:-d}", "value", &[]),
            ("${UNSET-d}", "d", &[]),
            ("${EMPTY-d}", "", &[]),
            ("${SET-d}", "value", &[]),
            ("${UNSET:-}", "", &[]),
            ("${UNSET:-a b:c-d}", "a b:c-d", &[]),
            // Alternatives: `:+` when set and non-empty, `+` when set.
            ("${SET:+alt}", "alt", &[]),
            ("${EMPTY:+alt}", "", &[]),
            ("${UNSET:+alt}", "", &[]),
            ("${SET+alt}", "alt", &[]),
            ("${EMPTY+alt}", "alt", &[]),
            ("${UNSET+alt}", "", &[]),
            // Required, when present.
            ("${SET:?msg}", "value", &[]),
            ("${EMPTY?msg}", "", &[]),
            // Nested.
            ("${UNSET:-${OTHER}}", "other", &[]),
            ("${UNSET:-${ALSO_UNSET:-x}}", "x", &[]),
            ("${UNSET:-${ALSO_UNSET}}", "", &["ALSO_UNSET"]),
            ("${SET:-${ALSO_UNSET}}", "value", &[]),
            ("${SET:+[${OTHER}]}", "[other]", &[]),
            ("${UNSET:-$OTHER}", "other", &[]),
            ("${UNSET:-${A:-${B:-deep}}}!", "deep!", &[]),
            // `$$` is a literal `$`, also inside defaults, and is not read as a variable.
            ("$$", "$", &[]),
            ("$$SET", "$SET", &[]),
            ("$${SET}", "${SET}", &[]),
            ("$$$SET", "$value", &[]),
            ("${UNSET:-$$}", "$", &[]),
            ("${UNSET:-$${x}}", "${x}", &[]),
            // A `$` that starts no variable stays.
            ("$", "$", &[]),
            ("a $ b", "a $ b", &[]),
            ("cost: 5$", "cost: 5$", &[]),
            ("$1 $-", "$1 $-", &[]),
            ("${UNSET:-{}}", "{}", &[]),
        ];
        for (input, output, unset) in cases {
            let got = interpolate(input, &env).unwrap_or_else(|e| panic!("`{input}` failed: {e}"));
            assert_eq!(got.text, *output, "`{input}`");
            assert_eq!(got.unset, *unset, "`{input}`: unset variables");
        }
    }

    #[test]
    fn errors_say_which_variable_and_why() {
        // (input, a part of the error)
        let cases: &[(&str, &str)] = &[
            (
                "${UNSET:?needed here}",
                "required variable `UNSET` is not set: needed here",
            ),
            (
                "${UNSET?needed}",
                "required variable `UNSET` is not set: needed",
            ),
            (
                "${EMPTY:?needed}",
                "required variable `EMPTY` is empty: needed",
            ),
            ("${UNSET?}", "required variable `UNSET` is not set"),
            ("${UNSET?$OTHER is missing}", "is not set: other is missing"),
            (
                "${UNSET:-${X:?inner}}",
                "required variable `X` is not set: inner",
            ),
            ("${SET", "`${` without its closing `}` in `${SET`"),
            ("${UNSET:-${X}", "without its closing"),
            ("${}", "`${}` is not a variable"),
            ("${1X}", "`${1X}` is not a variable"),
            ("${SET/a/b}", "`${SET/a/b}` is not a variable"),
            ("${SET:x}", "`${SET:x}` is not a variable"),
            ("${SET:}", "`${SET:}` is not a variable"),
            ("${SET=x}", "`${SET=x}` is not a variable"),
        ];
        for (input, needle) in cases {
            match interpolate(input, &env) {
                Ok(got) => panic!("`{input}` gave `{}`, not an error", got.text),
                Err(e) => assert!(e.contains(needle), "`{input}`: `{e}` lacks `{needle}`"),
            }
        }
        // A required variable in a default that is not used is not asked for.
        assert_eq!(interpolate("${SET:-${X:?no}}", &env).unwrap().text, "value");
    }
}
