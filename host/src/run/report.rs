//! Phase 7, the reports: each reporter handed the result; one that fails makes an error of
//! the run.

use panther_plugin_api::{Event, RunResult};

use super::state::Run;
use crate::{
    instance::Reporter,
    scope::{Adopted, Scope},
};

impl Run<'_> {
    /// Has every reporter write its report of `result`; their failures join its errors.
    pub fn report(
        &self,
        scope: &mut Scope,
        reporters: Vec<Adopted<Reporter>>,
        result: &mut RunResult,
    ) {
        for handle in reporters {
            let reporter = scope.get(&handle);
            let instance = reporter.id.instance.clone();
            match reporter.report(result) {
                Ok(()) => self.emit(
                    &instance,
                    &Event::ReportWritten {
                        instance: instance.clone(),
                    },
                ),
                Err(err) => {
                    self.emit(
                        &instance,
                        &Event::Error {
                            message: err.to_string(),
                        },
                    );
                    result.errors.push(err.to_string());
                }
            }
        }
    }
}
