//! How a failed call crosses the boundary: the error of an `RErr` is JSON that says whether
//! the plugin returned an error or panicked, with the message and its causes apart, so that
//! the host says what happened once and in its own words ("plugin `x` panicked while writing
//! its report: …", not "failed while writing its report: plugin panicked while writing its
//! report: …"). Since 1.5; the host also reads the plain text older plugins send.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A call that did not succeed, as the plugin reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "failure", rename_all = "snake_case")]
pub enum Failure {
    /// The call returned an error: its message, and the causes under it, outermost first.
    Error {
        /// The error's own message.
        message: String,
        /// What caused it, each cause once.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        causes: Vec<String>,
    },
    /// The plugin panicked.
    Panic {
        /// The panic's message.
        message: String,
        /// Where, as `file:line:column`, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
    },
}

/// What a plugin built against plugin-api 1.4 or older writes for a panic.
const LEGACY_PANIC: &str = "plugin panicked while ";

impl Failure {
    /// An error with its cause chain (anyhow's), each cause once.
    pub fn from_error(err: &anyhow::Error) -> Self {
        let message = err.to_string();
        let mut said = message.clone();
        let mut causes = Vec::new();
        for cause in err.chain().skip(1) {
            let text = cause.to_string();
            if !said.contains(&text) {
                said.push_str(&text);
                causes.push(text);
            }
        }
        Failure::Error { message, causes }
    }

    /// Reads the error of an `RErr`: the JSON of a 1.5 plugin, or the text of an older one
    /// (or of the host itself), which `doing` (what the call was doing) helps to read.
    pub fn read(text: &str, doing: &str) -> Self {
        if text.starts_with('{') {
            if let Ok(failure) = serde_json::from_str(text) {
                return failure;
            }
        }
        let legacy_panic = text
            .strip_prefix(LEGACY_PANIC)
            .and_then(|rest| rest.strip_prefix(doing))
            .and_then(|rest| rest.strip_prefix(": "));
        if let Some(rest) = legacy_panic {
            let (message, location) = match rest.rsplit_once(" (at ") {
                Some((message, at)) if at.ends_with(')') => {
                    (message, Some(at.trim_end_matches(')').to_string()))
                }
                _ => (rest, None),
            };
            return Failure::Panic {
                message: message.to_string(),
                location,
            };
        }
        Failure::Error {
            message: text.to_string(),
            causes: Vec::new(),
        }
    }

    /// Whether the plugin panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Failure::Panic { .. })
    }

    /// As the error of an `RErr`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.to_string())
    }
}

/// The message, then its causes (`message: cause: cause`); a panic's message with where it
/// happened.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error { message, causes } => {
                write!(f, "{message}")?;
                for cause in causes {
                    write!(f, ": {cause}")?;
                }
                Ok(())
            }
            Failure::Panic { message, location } => {
                write!(f, "{message}")?;
                if let Some(location) = location {
                    write!(f, " (at {location})")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_cross_as_json_and_older_texts_are_read() {
        let err = anyhow::anyhow!("No such file or directory (os error 2)")
            .context("opening /x")
            .context("writing the report");
        let failure = Failure::from_error(&err);
        assert_eq!(
            failure.to_string(),
            "writing the report: opening /x: No such file or directory (os error 2)"
        );
        assert_eq!(Failure::read(&failure.to_json(), "anything"), failure);

        let panic = Failure::Panic {
            message: "boom".into(),
            location: Some("src/lib.rs:3:5".into()),
        };
        assert_eq!(Failure::read(&panic.to_json(), "x"), panic);
        assert_eq!(panic.to_string(), "boom (at src/lib.rs:3:5)");

        // A plugin of 1.4 or older.
        let legacy = "plugin panicked while writing its report: boom (at src/lib.rs:3:5)";
        assert_eq!(Failure::read(legacy, "writing its report"), panic);
        let plain = Failure::read("cannot open /x", "writing its report");
        assert!(!plain.is_panic());
        assert_eq!(plain.to_string(), "cannot open /x");
        // Text that only looks like JSON stays text.
        assert_eq!(Failure::read("{oops", "x").to_string(), "{oops");
    }
}
