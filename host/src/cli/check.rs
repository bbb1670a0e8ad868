//! `check`: experiment files validated, nothing started.

use std::path::PathBuf;

use super::{report_experiment_error, resolver::Resolver};
use crate::{
    exit_code::{self, OK},
    plan::Plan,
};

pub(super) fn check(resolver: &Resolver<'_>, files: &[PathBuf], verbose: u8) -> u8 {
    let mut code = OK;
    for file in files {
        match resolver.resolve(file) {
            Ok(plan) => {
                print_warnings(&plan);
                if verbose > 0 {
                    for note in &plan.experiment.notes {
                        eprintln!("note: {note}");
                    }
                }
                let reports = plan.active_reporters().count();
                println!(
                    "{}: ok ({} service{}, network {}, {} execution environment{}, {} report{})",
                    file.display(),
                    plan.services.len(),
                    plural(plan.services.len()),
                    plan.network.instance.plugin,
                    plan.execution.len(),
                    plural(plan.execution.len()),
                    reports,
                    plural(reports),
                );
            }
            Err(err) => code = exit_code::worst([code, report_experiment_error(&err)]),
        }
    }
    code
}

/// What the plugins warned about while validating the experiment, one `warning:` line each.
pub(super) fn print_warnings(plan: &Plan) {
    for warning in &plan.experiment.warnings {
        eprintln!("warning: {warning}");
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
