//! `info`: one plugin's manifest, configuration schema and place in the matrix.

use std::io::Write;

use panther_plugin_api::{Manifest, PluginKind};
use serde_json::json;

use super::Format;
use crate::{
    exit_code::{INVALID_INPUT, OK},
    registry::Registry,
};

pub(super) fn info(registry: &Registry, name: &str, format: Format) -> u8 {
    let found = registry.find(name);
    if found.is_empty() {
        if let Some(failure) = registry.failure_for(name) {
            eprintln!("error: the plugin `{name}` cannot be used: {failure}");
            return INVALID_INPUT;
        }
        let known: Vec<String> = registry
            .plugins()
            .map(|p| p.manifest.name.clone())
            .collect();
        let hint = panther_plugin_api::suggest::did_you_mean(name, &known);
        eprintln!(
            "error: no plugin named `{name}`{hint}; known: {}",
            known.join(", ")
        );
        return INVALID_INPUT;
    }
    let matrix = crate::matrix::of(registry);
    let mut out = std::io::stdout().lock();
    for plugin in found {
        // Where an execution environment works on this machine, or what works in a network
        // environment: its row or column of `doctor`'s matrix.
        let cells = matrix.cells_of(&plugin.manifest.name);
        if format == Format::Json {
            let mut value = serde_json::to_value(&plugin.manifest).unwrap_or_default();
            value["path"] = json!(plugin.path);
            if !cells.is_empty() {
                value["works_with"] = cells
                    .iter()
                    .map(|(name, cell)| (name.to_string(), json!(cell)))
                    .collect();
            }
            let _ = writeln!(out, "{value:#}");
            continue;
        }
        let m: &Manifest = &plugin.manifest;
        let _ = writeln!(out, "{} {} ({})", m.name, m.version, m.kind);
        let _ = writeln!(out, "  {}", m.description);
        let _ = writeln!(out, "  file:          {}", plugin.path.display());
        let _ = writeln!(out, "  plugin API:    {}", m.api_version);
        let _ = writeln!(out, "  priority:      {}", m.priority);
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        let _ = writeln!(out, "  capabilities:  {}", list(&m.capabilities));
        let _ = writeln!(out, "  conflicts:     {}", list(&m.conflicts_with));
        let tools: Vec<String> = m
            .tools
            .iter()
            .map(|t| format!("{} (Debian: {})", t.program, t.package))
            .collect();
        let _ = writeln!(out, "  tools:         {}", list(&tools));
        // Keys of other vocabularies (PANTHER's): what is read as what, and what is refused
        // (`check` prints each refusal's hint).
        let read: Vec<String> = m
            .key_aliases
            .iter()
            .filter_map(|a| a.to.as_ref().map(|to| format!("{} as {to}", a.key)))
            .collect();
        let refused: Vec<String> = m
            .key_aliases
            .iter()
            .filter(|a| a.to.is_none())
            .map(|a| a.key.clone())
            .collect();
        let _ = writeln!(out, "  aliases:       {}", list(&read));
        let _ = writeln!(out, "  refused keys:  {}", list(&refused));
        if !cells.is_empty() {
            let other = match m.kind {
                PluginKind::ExecutionEnvironment => "in network environments",
                _ => "execution environments here",
            };
            let _ = writeln!(out, "  {other} (this machine):");
            for (name, cell) in &cells {
                let _ = writeln!(out, "    {name}: {cell}");
            }
        }
        let _ = writeln!(out, "  configuration schema:\n{:#}", m.config_schema);
    }
    OK
}
