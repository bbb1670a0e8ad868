//! `list`: every plugin found, the shadowed ones, the files that cannot be used.

use std::io::Write;

use serde_json::json;

use super::Format;
use crate::{
    exit_code::{INVALID_INPUT, OK},
    registry::Registry,
};

pub(super) fn list(registry: &Registry, format: Format) -> u8 {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if format == Format::Json {
        let plugins: Vec<_> = registry
            .plugins()
            .map(|p| {
                json!({
                    "name": p.manifest.name,
                    "kind": p.manifest.kind,
                    "version": p.manifest.version,
                    "api_version": p.manifest.api_version,
                    "description": p.manifest.description,
                    "path": p.path,
                    "status": "ok",
                })
            })
            .collect();
        let shadowed: Vec<_> = registry
            .shadowed()
            .iter()
            .map(|s| {
                json!({
                    "name": s.plugin.manifest.name,
                    "kind": s.plugin.manifest.kind,
                    "version": s.plugin.manifest.version,
                    "path": s.plugin.path,
                    "status": "shadowed",
                    "shadowed_by": s.by,
                })
            })
            .collect();
        let errors: Vec<_> = registry
            .failures()
            .iter()
            .map(|f| json!({ "path": f.path, "plugin": f.plugin, "error": f.kind.to_string() }))
            .collect();
        let _ = writeln!(
            out,
            "{:#}",
            json!({ "plugins": plugins, "shadowed": shadowed, "errors": errors })
        );
        return list_code(registry);
    }
    let mut rows = vec![[
        "NAME".to_string(),
        "TYPE".into(),
        "VERSION".into(),
        "STATUS".into(),
        "FILE".into(),
    ]];
    for p in registry.plugins() {
        rows.push([
            p.manifest.name.clone(),
            p.manifest.kind.to_string(),
            p.manifest.version.clone(),
            "ok".into(),
            p.path.display().to_string(),
        ]);
    }
    for s in registry.shadowed() {
        rows.push([
            s.plugin.manifest.name.clone(),
            s.plugin.manifest.kind.to_string(),
            s.plugin.manifest.version.clone(),
            format!("shadowed by {}", s.by.display()),
            s.plugin.path.display().to_string(),
        ]);
    }
    for f in registry.failures() {
        rows.push([
            "-".into(),
            "-".into(),
            "-".into(),
            "error".into(),
            f.path.display().to_string(),
        ]);
    }
    let _ = write!(out, "{}", crate::table::aligned(rows));
    if !registry.failures().is_empty() {
        let _ = writeln!(out, "\nFiles that failed to load:");
        for f in registry.failures() {
            let _ = writeln!(out, "  {f}");
        }
    }
    list_code(registry)
}

/// `list` exits 2 when a file or folder cannot be used, so scripts can tell.
fn list_code(registry: &Registry) -> u8 {
    if registry.failures().is_empty() {
        OK
    } else {
        INVALID_INPUT
    }
}
