//! The ranges the host accepts for values it computes with or hands to the kernel.
//!
//! A value `check` accepts must never make `run` fail in an unexpected way: a duration is
//! added to clocks and multiplied by slowdowns, so it has a ceiling ([`MAX_DURATION`]);
//! arguments, environment entries and paths go to `execve` and `chdir`, which cannot carry a
//! NUL byte; environment keys cannot be empty or contain `=`.

use std::time::Duration;

/// The longest timeout or delay accepted: 30 days. Longer than any experiment, and small
/// enough that scaling it by the slowdowns of stacked execution environments and adding it
/// to a clock cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Checks a timeout: more than zero, at most [`MAX_DURATION`].
pub fn timeout(value: Duration) -> Result<(), String> {
    if value.is_zero() {
        return Err("must be more than 0s".into());
    }
    delay(value)
}

/// Checks a delay: at most [`MAX_DURATION`] (zero is allowed).
pub fn delay(value: Duration) -> Result<(), String> {
    if value > MAX_DURATION {
        return Err(format!(
            "is longer than {}, the longest accepted",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(())
}

/// Parses `--timeout` on the command line (`30s`, `2m`) and checks its range.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let value = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    timeout(value).map(|()| value)
}

/// Checks an exit code a service is expected to end with: what `exit` can return.
pub fn exit_code(value: i32) -> Result<(), String> {
    if (0..=255).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "is {value}; a process exits with a code from 0 to 255"
        ))
    }
}

/// Checks an environment variable's name: not empty, no `=` and no NUL.
pub fn env_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        Err("an environment variable needs a name".into())
    } else if key.contains('=') {
        Err("an environment variable's name cannot contain `=`".into())
    } else if key.contains('\0') {
        Err("an environment variable's name cannot contain a NUL byte".into())
    } else {
        Ok(())
    }
}

/// Whether `text` can be passed to the kernel (no NUL byte).
pub fn no_nul(text: &[u8]) -> bool {
    !text.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_a_ceiling_and_timeouts_a_floor() {
        assert!(timeout(Duration::from_secs(30)).is_ok());
        assert!(timeout(MAX_DURATION).is_ok());
        assert!(timeout(Duration::ZERO).is_err());
        assert!(delay(Duration::ZERO).is_ok());
        let err = parse_timeout("18446744073709551615s").unwrap_err();
        assert_eq!(err, "is longer than 30days, the longest accepted");
    }

    #[test]
    fn environment_keys_are_names() {
        assert!(env_key("RUST_LOG").is_ok());
        assert!(env_key("").is_err());
        assert!(env_key("A=B").is_err());
        assert!(env_key("A\0").is_err());
    }
}
