//! Which execution environment works in which network environment on this machine, as
//! `doctor` prints it: a tool must be installed, a container engine reachable, and the tool
//! must be one that reaches services in containers (its plugin declares the capability
//! [`IN_CONTAINERS`](panther_plugin_api::capability::IN_CONTAINERS)). `check` refuses the cells that cannot work for a given experiment
//! (e.g. a library preloaded into a static program); this says what this machine allows.

use std::path::PathBuf;

use panther_plugin_api::{
    capability::{CONTAINERS, IN_CONTAINERS, LOCAL_PROCESSES},
    PluginKind,
};

use crate::{registry::Registry, tools};

/// The matrix: execution environments (rows) by network environments (columns).
pub struct Matrix {
    /// Network environment names, the columns.
    pub networks: Vec<String>,
    /// For each execution environment, one cell per network environment.
    pub rows: Vec<(String, Vec<String>)>,
}

/// Where the Docker engine listens (`DOCKER_HOST` when it names a socket).
fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Whether a container engine answers on its socket.
fn engine_reachable() -> bool {
    std::os::unix::net::UnixStream::connect(engine_socket()).is_ok()
}

/// The matrix of the loaded plugins on this machine.
pub fn of(registry: &Registry) -> Matrix {
    let engine = engine_reachable();
    let mut networks: Vec<_> = registry
        .plugins()
        .filter(|p| p.manifest.kind == PluginKind::NetworkEnvironment)
        .collect();
    networks.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
    networks.dedup_by(|a, b| a.manifest.name == b.manifest.name);
    let mut executions: Vec<_> = registry
        .plugins()
        .filter(|p| p.manifest.kind == PluginKind::ExecutionEnvironment)
        .collect();
    executions.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
    executions.dedup_by(|a, b| a.manifest.name == b.manifest.name);
    let has = |caps: &[String], cap: &str| caps.iter().any(|c| c == cap);
    let rows = executions
        .iter()
        .map(|exec| {
            let missing: Vec<&str> = exec
                .manifest
                .tools
                .iter()
                .filter(|t| tools::locate(t).is_none())
                .map(|t| t.program.as_str())
                .collect();
            let cells = networks
                .iter()
                .map(|net| {
                    let caps = &net.manifest.capabilities;
                    if !missing.is_empty() {
                        format!("no: {} missing", missing.join(", "))
                    } else if has(caps, LOCAL_PROCESSES) {
                        "yes".to_string()
                    } else if has(caps, CONTAINERS) && !engine {
                        "no: engine unreachable".to_string()
                    } else if has(caps, CONTAINERS) {
                        if has(&exec.manifest.capabilities, IN_CONTAINERS) {
                            "yes".to_string()
                        } else {
                            "no: not carried".to_string()
                        }
                    } else {
                        "unknown".to_string()
                    }
                })
                .collect();
            (exec.manifest.name.clone(), cells)
        })
        .collect();
    Matrix {
        networks: networks.iter().map(|n| n.manifest.name.clone()).collect(),
        rows,
    }
}

impl Matrix {
    /// What the matrix says about one plugin: for an execution environment its row (each
    /// network environment with its cell), for a network environment its column (each
    /// execution environment with its cell). Empty for other plugins.
    pub fn cells_of(&self, plugin: &str) -> Vec<(&str, &str)> {
        if let Some((_, cells)) = self.rows.iter().find(|(name, _)| name == plugin) {
            return self
                .networks
                .iter()
                .zip(cells)
                .map(|(n, c)| (n.as_str(), c.as_str()))
                .collect();
        }
        let Some(column) = self.networks.iter().position(|n| n == plugin) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .map(|(name, cells)| (name.as_str(), cells[column].as_str()))
            .collect()
    }

    /// As a table for the terminal.
    pub fn table(&self) -> String {
        let header = std::iter::once("EXECUTION".to_string())
            .chain(self.networks.iter().map(|n| n.to_uppercase()))
            .collect::<Vec<_>>();
        let rows = self.rows.iter().map(|(name, cells)| {
            std::iter::once(name.clone())
                .chain(cells.iter().cloned())
                .collect::<Vec<_>>()
        });
        crate::table::aligned(std::iter::once(header).chain(rows))
    }
}
