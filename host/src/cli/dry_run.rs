//! `run --dry-run`: the plan of each experiment, printed, nothing run.

use std::{io::Write, path::PathBuf};

use serde_json::json;

use super::{report_experiment_error, resolver::Resolver, run::options, Format};
use crate::{
    exit_code::{self, INTERNAL_ERROR, OK},
    run,
    settings::Settings,
};

pub(super) fn plan(resolver: &Resolver<'_>, files: &[PathBuf], format: Format) -> u8 {
    let mut code = OK;
    let mut all = Vec::new();
    for file in files {
        let plan = match resolver.resolve(file) {
            Ok(plan) => plan,
            Err(err) => {
                code = exit_code::worst([code, report_experiment_error(&err)]);
                continue;
            }
        };
        let options = options(
            &Settings::default(),
            &resolver.plan.isolation,
            PathBuf::new(),
            None,
            0,
        );
        match run::dry_run(&plan, options) {
            Ok(planned) => all.push((plan, planned)),
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                code = exit_code::worst([code, INTERNAL_ERROR]);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        let value: Vec<_> = all
            .iter()
            .map(|(plan, planned)| {
                json!({
                    "experiment": plan.experiment.name,
                    "network": plan.network.instance.plugin,
                    "services": planned,
                    "plan": plan.describe(),
                })
            })
            .collect();
        let _ = writeln!(out, "{:#}", serde_json::Value::Array(value));
        return code;
    }
    for (plan, planned) in &all {
        let exp = &plan.experiment;
        let _ = writeln!(
            out,
            "experiment {} on {} (timeout {})",
            exp.name,
            plan.network.instance.plugin,
            humantime::format_duration(exp.timeout)
        );
        let _ = writeln!(
            out,
            "  results: {} ({})",
            plan.output.0.display(),
            plan.output.1.as_str()
        );
        let reports: Vec<String> = plan
            .active_reporters()
            .map(|r| format!("{} ({})", r.instance.name, r.origin.as_str()))
            .collect();
        if !reports.is_empty() {
            let _ = writeln!(out, "  reports: {}", reports.join(", "));
        }
        for (i, p) in planned.iter().enumerate() {
            let role = match p.spec.role {
                panther_plugin_api::Role::Server => "server",
                panther_plugin_api::Role::Client => "client",
            };
            let _ = writeln!(out, "  {}. {} ({role})", i + 1, p.spec.name);
            if !p.spec.depends_on.is_empty() {
                let _ = writeln!(out, "     after:   {}", p.spec.depends_on.join(", "));
            }
            if !p.ports.is_empty() {
                let ports: Vec<String> = p.ports.iter().map(|(n, v)| format!("{n}={v}")).collect();
                let _ = writeln!(out, "     ports:   {}", ports.join(", "));
            }
            if !p.execution.is_empty() {
                let _ = writeln!(
                    out,
                    "     wrapped: {} (slowdown ×{:.1})",
                    p.execution.join(" + "),
                    p.slowdown
                );
            }
            let env: Vec<String> = p
                .spec
                .env
                .iter()
                .map(|(k, v)| format!("{k}={}", shell_quote(v)))
                .collect();
            let argv: Vec<String> = p.spec.argv.iter().map(|a| shell_quote(a)).collect();
            let _ = writeln!(
                out,
                "     command: {}{}",
                if env.is_empty() {
                    String::new()
                } else {
                    format!("{} ", env.join(" "))
                },
                argv.join(" ")
            );
        }
    }
    code
}

/// Quotes an argument for display so that what is printed can be pasted into a shell.
fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_metacharacters_visible() {
        assert_eq!(shell_quote("; rm -rf x"), "'; rm -rf x'");
        assert_eq!(shell_quote("plain"), "plain");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
