//! Docker engine code shared by the container network environments (`docker_compose`,
//! `localhost_single_container`), over the engine's HTTP API (`bollard`): nothing here runs
//! the `docker` program.
//!
//! - [`Engine`]: a connection and a tokio runtime owned by the plugin instance. A plugin
//!   library has its own copy of tokio, and the host calls plugins from plain threads, so
//!   every call blocks on this runtime ([`Engine::block_on`]).
//! - [`image`]: images built from a local folder (sent to the engine's build API as a tar);
//!   nothing is ever pulled. [`builds`]: a journal of the layers each build commits, for
//!   `clean` after a killed build.
//! - [`container`]: create, start, follow (output into the service's capture files, exit
//!   code), stop, inspect.
//! - [`exec`]: commands started inside a running container, followed the same way.
//! - [`labels`]: what every object a run creates is labelled with, and
//!   [`cleanup`]: removing everything with a run's label (teardown) or left by a host that
//!   is gone (`panther-host clean`).
//! - [`site`]: how the program of a service is linked, told from the build folder.
//! - [`ready`]: readiness checks shared with the way `localhost` waits for its services.

pub mod builds;
pub mod cleanup;
pub mod container;
mod engine;
pub mod exec;
pub mod image;
pub mod labels;
pub mod site;
pub use panther_plugin_api::readiness as ready;

pub use bollard;
pub use engine::{api_error, is_not_found, Engine};
pub use labels::RunLabels;

/// A name usable for containers, networks, volumes and image tags: lowercase ASCII letters,
/// digits, `-` and `_`, starting with a letter or digit.
pub fn sanitize_name(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .collect();
    while out.starts_with(['-', '_']) {
        out.remove(0);
    }
    if out.is_empty() {
        out.push_str("panther");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize_name;

    #[test]
    fn names_are_made_acceptable_to_the_engine() {
        assert_eq!(
            sanitize_name("Echo-20261122T043819.123Z"),
            "echo-20261122t043819-123z"
        );
        assert_eq!(sanitize_name("_x y"), "x-y");
        assert_eq!(sanitize_name("..."), "panther");
    }
}
