//! Which compose keys this plugin supports, which it may ignore, and which it must refuse.
//!
//! The Compose Specification lets an implementation warn about an attribute it does not
//! support and go on without it. That is only honest where going on without it cannot
//! change what an experiment means: a label, a log driver, a pull policy (nothing is pulled
//! here anyway). A key that changes what runs, as what user, with what limits, names or
//! addresses (`user`, `working_dir`, `privileged`, `network_mode`, `deploy`, …) is refused:
//! ignoring it would run something else than the file says and call it the same experiment.
//! A key the specification does not have is warned about, unless it is a near miss of a key
//! that matters (`comand`), which is refused with the key it probably meant. With
//! `strict = true` everything not supported is refused. docs/experiments.md lists the
//! classes and why.

/// What becomes of a key in one place of a compose file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Read and used.
    Supported,
    /// Warned about and left out: it cannot change what a run means (the reason says why).
    Ignored(&'static str),
    /// Refused, also without `strict`: it changes what runs (the reason says how).
    Refused(&'static str),
    /// Not a key of the Compose Specification here.
    Unknown,
}

/// The places in a compose file that have keys of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The top level.
    TopLevel,
    /// A service.
    Service,
    /// A service's `build`.
    Build,
    /// A service's `healthcheck`.
    Healthcheck,
    /// One entry of a service's `depends_on`.
    DependsOn,
    /// A `ports` entry in the long syntax.
    Port,
    /// A `volumes` entry in the long syntax.
    VolumeMount,
    /// One network of a service's `networks`.
    ServiceNetwork,
    /// A top-level network.
    Network,
    /// A top-level volume.
    Volume,
}

type Table = &'static [(&'static str, Verdict)];

use Verdict::{Ignored, Refused, Supported};

const NO_PULL: &str = "nothing is pulled here: images are in the engine's store or built";
const METADATA: &str = "metadata: nothing in the container sees it";
const LOGS: &str = "each service's stdout and stderr are captured into the run's results";
const NAMES: &str =
    "the run names what it creates, per run; services reach each other by service name";
const RUNS: &str = "it changes what runs or how";
const LIMITS: &str = "a resource limit changes how a service behaves under load";
const PRIVILEGE: &str = "it changes what a service may do";
const ADDRESSES: &str = "it changes names or addresses the services see";
const SERVICES: &str = "it changes which services run";
const IMAGE: &str = "it changes which image is built";
const STOPPING: &str = "it changes how a service is stopped, and so how it ended";
const SWARM: &str = "a Swarm or orchestration setting: nothing here places services";
const DEV: &str = "a setting of `docker compose watch` or of the compose program's output";
const BUILD_CACHE: &str = "it changes how fast an image builds, not what it holds";

const TOP_LEVEL: Table = &[
    ("services", Supported),
    ("networks", Supported),
    ("volumes", Supported),
    ("name", Supported),
    ("version", Supported),
    (
        "secrets",
        Ignored("unused unless a service names them, and a service's `secrets` is refused"),
    ),
    (
        "configs",
        Ignored("unused unless a service names them, and a service's `configs` is refused"),
    ),
    ("include", Refused(SERVICES)),
    ("models", Refused(SERVICES)),
];

const SERVICE: Table = &[
    ("build", Supported),
    ("cap_add", Supported),
    ("command", Supported),
    ("depends_on", Supported),
    ("entrypoint", Supported),
    ("environment", Supported),
    ("healthcheck", Supported),
    ("image", Supported),
    ("init", Supported),
    ("networks", Supported),
    ("ports", Supported),
    ("restart", Supported),
    ("volumes", Supported),
    ("labels", Ignored(METADATA)),
    ("label_file", Ignored(METADATA)),
    ("annotations", Ignored(METADATA)),
    ("logging", Ignored(LOGS)),
    ("attach", Ignored(LOGS)),
    ("pull_policy", Ignored(NO_PULL)),
    ("pull_refresh_after", Ignored(NO_PULL)),
    (
        "expose",
        Ignored("every port is reachable from the run's other containers without it"),
    ),
    ("develop", Ignored(DEV)),
    ("container_name", Refused(ADDRESSES)),
    ("hostname", Refused(ADDRESSES)),
    ("domainname", Refused(ADDRESSES)),
    ("dns", Refused(ADDRESSES)),
    ("dns_opt", Refused(ADDRESSES)),
    ("dns_search", Refused(ADDRESSES)),
    ("extra_hosts", Refused(ADDRESSES)),
    ("links", Refused(ADDRESSES)),
    ("external_links", Refused(ADDRESSES)),
    ("mac_address", Refused(ADDRESSES)),
    ("network_mode", Refused(ADDRESSES)),
    ("user", Refused(RUNS)),
    ("working_dir", Refused(RUNS)),
    ("env_file", Refused(RUNS)),
    ("secrets", Refused(RUNS)),
    ("configs", Refused(RUNS)),
    ("tty", Refused(RUNS)),
    ("stdin_open", Refused(RUNS)),
    ("read_only", Refused(RUNS)),
    ("tmpfs", Refused(RUNS)),
    ("volumes_from", Refused(RUNS)),
    ("volume_driver", Refused(RUNS)),
    ("extends", Refused(RUNS)),
    ("platform", Refused(IMAGE)),
    ("runtime", Refused(RUNS)),
    ("isolation", Refused(RUNS)),
    ("post_start", Refused(RUNS)),
    ("pre_stop", Refused(RUNS)),
    ("use_api_socket", Refused(RUNS)),
    ("provider", Refused(SERVICES)),
    ("models", Refused(RUNS)),
    ("profiles", Refused(SERVICES)),
    ("scale", Refused(SERVICES)),
    ("deploy", Refused(SERVICES)),
    ("stop_signal", Refused(STOPPING)),
    ("stop_grace_period", Refused(STOPPING)),
    ("privileged", Refused(PRIVILEGE)),
    ("cap_drop", Refused(PRIVILEGE)),
    ("security_opt", Refused(PRIVILEGE)),
    ("devices", Refused(PRIVILEGE)),
    ("device_cgroup_rules", Refused(PRIVILEGE)),
    ("gpus", Refused(PRIVILEGE)),
    ("group_add", Refused(PRIVILEGE)),
    ("userns_mode", Refused(PRIVILEGE)),
    ("ipc", Refused(PRIVILEGE)),
    ("pid", Refused(PRIVILEGE)),
    ("uts", Refused(PRIVILEGE)),
    ("cgroup", Refused(PRIVILEGE)),
    ("cgroup_parent", Refused(PRIVILEGE)),
    ("credential_spec", Refused(PRIVILEGE)),
    ("sysctls", Refused(RUNS)),
    ("ulimits", Refused(LIMITS)),
    ("shm_size", Refused(LIMITS)),
    ("storage_opt", Refused(LIMITS)),
    ("mem_limit", Refused(LIMITS)),
    ("mem_reservation", Refused(LIMITS)),
    ("mem_swappiness", Refused(LIMITS)),
    ("memswap_limit", Refused(LIMITS)),
    ("oom_kill_disable", Refused(LIMITS)),
    ("oom_score_adj", Refused(LIMITS)),
    ("pids_limit", Refused(LIMITS)),
    ("cpus", Refused(LIMITS)),
    ("cpu_count", Refused(LIMITS)),
    ("cpu_percent", Refused(LIMITS)),
    ("cpu_shares", Refused(LIMITS)),
    ("cpu_period", Refused(LIMITS)),
    ("cpu_quota", Refused(LIMITS)),
    ("cpu_rt_runtime", Refused(LIMITS)),
    ("cpu_rt_period", Refused(LIMITS)),
    ("cpuset", Refused(LIMITS)),
    ("blkio_config", Refused(LIMITS)),
];

const BUILD: Table = &[
    ("context", Supported),
    ("dockerfile", Supported),
    ("args", Supported),
    ("labels", Ignored(METADATA)),
    ("cache_from", Ignored(BUILD_CACHE)),
    ("cache_to", Ignored(BUILD_CACHE)),
    ("no_cache", Ignored(BUILD_CACHE)),
    ("pull", Ignored(NO_PULL)),
    ("provenance", Ignored(METADATA)),
    ("sbom", Ignored(METADATA)),
    (
        "tags",
        Ignored("extra names for the image; the run uses the service's `image:` or its own"),
    ),
    ("target", Refused(IMAGE)),
    ("dockerfile_inline", Refused(IMAGE)),
    ("additional_contexts", Refused(IMAGE)),
    ("platforms", Refused(IMAGE)),
    ("secrets", Refused(IMAGE)),
    ("ssh", Refused(IMAGE)),
    ("network", Refused(IMAGE)),
    ("extra_hosts", Refused(IMAGE)),
    ("shm_size", Refused(IMAGE)),
    ("ulimits", Refused(IMAGE)),
    ("isolation", Refused(IMAGE)),
    ("privileged", Refused(IMAGE)),
    ("entitlements", Refused(IMAGE)),
];

const HEALTHCHECK: Table = &[
    ("test", Supported),
    ("interval", Supported),
    ("timeout", Supported),
    ("retries", Supported),
    ("start_period", Supported),
    ("disable", Supported),
    (
        "start_interval",
        Ignored("checks during `start_period` run every `interval`: readiness may come later, not differently"),
    ),
];

const DEPENDS_ON: Table = &[
    ("condition", Supported),
    (
        "restart",
        Ignored(
            "it restarts a dependent when compose updates its dependency; a run updates nothing",
        ),
    ),
    (
        "required",
        Ignored("every dependency must be a service of the file here, as with `required: true`"),
    ),
];

const PORT: Table = &[
    ("target", Supported),
    ("published", Supported),
    ("protocol", Supported),
    ("host_ip", Supported),
    ("name", Ignored(METADATA)),
    ("app_protocol", Ignored(METADATA)),
    ("mode", Ignored(SWARM)),
];

const VOLUME_MOUNT: Table = &[
    ("type", Supported),
    ("source", Supported),
    ("target", Supported),
    ("read_only", Supported),
    ("consistency", Ignored("a Docker Desktop file-sharing hint")),
    ("bind", Refused(RUNS)),
    ("volume", Refused(RUNS)),
    ("tmpfs", Refused(RUNS)),
    ("image", Refused(RUNS)),
];

const SERVICE_NETWORK: Table = &[
    ("aliases", Supported),
    ("ipv4_address", Refused(ADDRESSES)),
    ("ipv6_address", Refused(ADDRESSES)),
    ("link_local_ips", Refused(ADDRESSES)),
    ("mac_address", Refused(ADDRESSES)),
    ("driver_opts", Refused(ADDRESSES)),
    ("interface_name", Refused(ADDRESSES)),
    ("priority", Refused(ADDRESSES)),
    ("gw_priority", Refused(ADDRESSES)),
];

const NETWORK: Table = &[
    ("driver", Supported),
    ("internal", Supported),
    ("labels", Supported),
    ("name", Ignored(NAMES)),
    ("attachable", Ignored(SWARM)),
    ("external", Refused(ADDRESSES)),
    ("driver_opts", Refused(ADDRESSES)),
    ("ipam", Refused(ADDRESSES)),
    ("enable_ipv4", Refused(ADDRESSES)),
    ("enable_ipv6", Refused(ADDRESSES)),
];

const VOLUME: Table = &[
    ("driver", Supported),
    ("labels", Supported),
    ("name", Ignored(NAMES)),
    ("external", Refused(RUNS)),
    ("driver_opts", Refused(RUNS)),
];

fn table(place: Place) -> Table {
    match place {
        Place::TopLevel => TOP_LEVEL,
        Place::Service => SERVICE,
        Place::Build => BUILD,
        Place::Healthcheck => HEALTHCHECK,
        Place::DependsOn => DEPENDS_ON,
        Place::Port => PORT,
        Place::VolumeMount => VOLUME_MOUNT,
        Place::ServiceNetwork => SERVICE_NETWORK,
        Place::Network => NETWORK,
        Place::Volume => VOLUME,
    }
}

/// What becomes of `key` in `place`. `x-` extension fields are supported everywhere (they
/// are for anchors).
pub fn verdict(place: Place, key: &str) -> Verdict {
    if key.starts_with("x-") {
        return Supported;
    }
    table(place)
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .unwrap_or(Verdict::Unknown)
}

/// The keys supported in `place`, for messages.
pub fn supported(place: Place) -> Vec<&'static str> {
    table(place)
        .iter()
        .filter(|(_, v)| *v == Supported)
        .map(|(k, _)| *k)
        .collect()
}

/// A key of `place` that an unknown `key` is probably a typo of, when that key matters
/// (supported or refused): ignoring the typo would run without what it was meant to say.
pub fn near_miss(place: Place, key: &str) -> Option<&'static str> {
    let matter = table(place)
        .iter()
        .filter(|(_, v)| !matches!(v, Ignored(_)))
        .map(|(k, _)| *k);
    panther_plugin_api::suggest::closest(key, matter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_in_one_class_and_typos_of_keys_that_matter_are_caught() {
        for place in [
            Place::TopLevel,
            Place::Service,
            Place::Build,
            Place::Healthcheck,
            Place::DependsOn,
            Place::Port,
            Place::VolumeMount,
            Place::ServiceNetwork,
            Place::Network,
            Place::Volume,
        ] {
            let keys = table(place);
            for (i, (key, _)) in keys.iter().enumerate() {
                assert!(
                    !keys[..i].iter().any(|(k, _)| k == key),
                    "{place:?}: `{key}` twice"
                );
            }
        }
        assert_eq!(verdict(Place::Service, "labels"), Ignored(METADATA));
        assert_eq!(verdict(Place::Service, "user"), Refused(RUNS));
        assert_eq!(verdict(Place::Service, "x-anything"), Supported);
        assert_eq!(verdict(Place::Service, "frobnicate"), Verdict::Unknown);
        assert_eq!(near_miss(Place::Service, "comand"), Some("command"));
        assert_eq!(near_miss(Place::Service, "enviroment"), Some("environment"));
        assert_eq!(near_miss(Place::Service, "usr"), Some("user"));
        // A typo of a key that may be ignored anyway is no worse than the key.
        assert_eq!(near_miss(Place::Service, "lables"), None);
        assert_eq!(near_miss(Place::Service, "frobnicate"), None);
    }

    /// docs/experiments.md lists every key in its class: users read the table, not this file.
    #[test]
    fn the_documentation_lists_every_key_in_its_class() {
        let docs = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/experiments.md"),
        )
        .unwrap();
        for (place, label) in [
            (Place::TopLevel, "the top level"),
            (Place::Service, "a service"),
            (Place::Build, "a service's `build`"),
            (Place::Healthcheck, "`healthcheck`"),
            (Place::DependsOn, "a `depends_on` entry"),
            (Place::Port, "a `ports` entry (long syntax)"),
            (Place::VolumeMount, "a `volumes` entry (long syntax)"),
            (Place::ServiceNetwork, "a service's network"),
            (Place::Network, "a top-level network"),
            (Place::Volume, "a top-level volume"),
        ] {
            let row = docs
                .lines()
                .find(|l| l.starts_with(&format!("| {label} |")))
                .unwrap_or_else(|| panic!("docs/experiments.md has no row for {label}"));
            let columns: Vec<&str> = row.split(" | ").collect();
            for (key, verdict) in table(place) {
                let column = match verdict {
                    Supported => 1,
                    Ignored(_) => 2,
                    Refused(_) => 3,
                    Verdict::Unknown => unreachable!("not in a table"),
                };
                assert!(
                    columns[column].contains(&format!("`{key}`")),
                    "{label}: `{key}` is not in its column ({verdict:?}) of docs/experiments.md"
                );
            }
        }
    }
}
