//! `doctor`: the plugins' tools on this machine, and where each execution environment works.

use std::io::Write;

use serde_json::json;

use super::Format;
use crate::{
    exit_code::{INVALID_INPUT, OK},
    registry::Registry,
    tools,
};

pub(super) fn doctor(registry: &Registry, format: Format) -> u8 {
    let mut rows = Vec::new();
    for plugin in registry.plugins() {
        for tool in &plugin.manifest.tools {
            let found = tools::locate(tool);
            let mut status = match &found {
                Some(path) => format!("ok ({})", path.display()),
                None => format!(
                    "MISSING: apt-get install {}{}",
                    tool.package,
                    tools::or_configure(tool)
                ),
            };
            // A tracer is only useful where ptrace is allowed (Yama, seccomp): try it.
            if let (Some(path), true) = (&found, tool.program == "strace") {
                if let Err(why) = ptrace_usable(path) {
                    status = format!("UNUSABLE: {why}");
                }
            }
            rows.push((
                plugin.manifest.name.clone(),
                tool.program.clone(),
                tool.package.clone(),
                status,
            ));
        }
    }
    let healthy = rows.iter().all(|r| r.3.starts_with("ok"));
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        let value: Vec<_> = rows
            .iter()
            .map(|(plugin, tool, package, status)| json!({ "plugin": plugin, "tool": tool, "package": package, "ok": status.starts_with("ok"), "status": status }))
            .collect();
        let _ = writeln!(out, "{:#}", serde_json::Value::Array(value));
    } else {
        let header = [["PLUGIN", "TOOL", "PACKAGE", "STATUS"].map(String::from)];
        let lines = rows.iter().map(|(plugin, tool, package, status)| {
            [plugin, tool, package, status].map(String::clone)
        });
        let _ = write!(
            out,
            "{}",
            crate::table::aligned(header.into_iter().chain(lines))
        );
        // Where each execution environment works on this machine.
        let _ = write!(out, "\n{}", crate::matrix::of(registry).table());
    }
    if healthy {
        OK
    } else {
        INVALID_INPUT
    }
}

/// Whether `strace` may trace a child here (ptrace can be forbidden by Yama or a seccomp
/// profile): traces `/bin/true` once.
fn ptrace_usable(strace: &std::path::Path) -> Result<(), String> {
    let output = std::process::Command::new(strace)
        .args(["-f", "-o", "/dev/null", "--", "/bin/true"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", strace.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ptrace is not allowed here: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
