//! What a name may be.
//!
//! Experiment, service and plugin-instance names become folder and file names in the results
//! folder (`<experiment>/…`, `services/<service>.stdout`, `monitoring/<service>/<instance>/`),
//! Docker object names and terminal output. A name is therefore checked before anything
//! uses it ([`check`]): not empty, at most [`MAX_NAME_BYTES`] bytes, no control characters
//! (newlines, terminal escapes) nor invisible text-direction marks, no `/`, and not `.` or
//! `..`. Anything else — spaces, dots, non-ASCII letters — is allowed.
//!
//! Names that failed the check still have to be shown in the message that refuses them;
//! [`shown`] prints them escaped and shortened.

/// The longest name allowed, in bytes (UTF-8). Long enough for any descriptive name, short
/// enough that `<results>/<experiment>/<timestamp>/monitoring/<service>/<instance>.json` stays
/// far below the 4096-byte path limit of Linux.
pub const MAX_NAME_BYTES: usize = 128;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("is {0} bytes long; a name has at most {MAX_NAME_BYTES}")]
    TooLong(usize),
    /// The name contains a control character (a newline, an escape, NUL, …) or a mark that
    /// changes how text around it is displayed.
    #[error("contains the unprintable character {0:?}")]
    Unprintable(char),
    /// The name contains `/` and would name a path, not a file.
    #[error("contains `/`; a name cannot be a path")]
    Separator,
    /// The name is `.` or `..`, which name folders that already exist.
    #[error("cannot be `.` or `..`")]
    Dot,
}

/// Checks that `name` can be used as a file name, a folder name and a label.
pub fn check(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some(c) = name.chars().find(|&c| unprintable(c)) {
        return Err(NameError::Unprintable(c));
    }
    if name.contains('/') {
        return Err(NameError::Separator);
    }
    if name == "." || name == ".." {
        return Err(NameError::Dot);
    }
    Ok(())
}

/// Control characters, and the bidirectional-text controls that make a terminal show text
/// in another order than it is written.
pub fn unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// How a name (or any user text) appears in a message: control characters escaped, and
/// shortened to its first 40 characters when longer, with its length in bytes.
pub fn shown(text: &str) -> String {
    const SHOWN_CHARS: usize = 40;
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(SHOWN_CHARS) {
        if unprintable(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push_str(&format!("… ({} bytes)", text.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "server",
            "echo client",
            "v1.2",
            "überprüfung",
            "a..b",
            ".hidden",
        ] {
            assert_eq!(check(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn names_that_are_not_file_names_are_refused() {
        assert_eq!(check(""), Err(NameError::Empty));
        assert_eq!(check("../x"), Err(NameError::Separator));
        assert_eq!(check("/tmp/x"), Err(NameError::Separator));
        assert_eq!(check(".."), Err(NameError::Dot));
        assert_eq!(check("."), Err(NameError::Dot));
        assert_eq!(check("a\nb"), Err(NameError::Unprintable('\n')));
        assert_eq!(
            check("\u{1b}[31mred"),
            Err(NameError::Unprintable('\u{1b}'))
        );
        assert_eq!(check("a\0b"), Err(NameError::Unprintable('\0')));
        assert_eq!(
            check("abc\u{202E}"),
            Err(NameError::Unprintable('\u{202E}'))
        );
        assert_eq!(check(&"x".repeat(129)), Err(NameError::TooLong(129)));
        assert_eq!(check(&"x".repeat(128)), Ok(()));
    }

    #[test]
    fn shown_names_are_escaped_and_short() {
        assert_eq!(shown("a\u{1b}[0m"), "a\\u{1b}[0m");
        let long = "y".repeat(1 << 20);
        assert_eq!(shown(&long), format!("{}… (1048576 bytes)", "y".repeat(40)));
    }
}
