//! Live progress of a job on a terminal: one line per runner saying what it runs, and a bar
//! counting finished experiments. Drawn on stderr, so stdout stays for machine output.

use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use panther_plugin_api::RunStatus;

use crate::job::Progress;

/// The bars of one job.
pub struct Bars {
    _multi: MultiProgress,
    runners: Mutex<Vec<(String, ProgressBar)>>,
    total: ProgressBar,
}

impl Bars {
    /// Bars for `runners` runners and `experiments` experiments.
    pub fn new(runners: usize, experiments: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let line = ProgressStyle::with_template("{spinner} {prefix:>10} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let mut lines = Vec::with_capacity(runners);
        for i in 1..=runners {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(line.clone());
            bar.set_prefix(format!("runner-{i}"));
            bar.set_message("waiting");
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            lines.push((format!("runner-{i}"), bar));
        }
        let total = multi.add(ProgressBar::new(experiments as u64));
        total.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} experiments, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        total.set_message("0 failed");
        Bars {
            _multi: multi,
            runners: Mutex::new(lines),
            total,
        }
    }

    fn line(&self, runner: &str, message: String) {
        let runners = self.runners.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bar)) = runners.iter().find(|(name, _)| name == runner) {
            bar.set_message(message);
        }
    }
}

impl Progress for Bars {
    fn started(&self, runner: &str, experiment: &str) {
        self.line(runner, format!("running {experiment}"));
    }

    fn finished(&self, runner: &str, experiment: &str, status: RunStatus) {
        self.line(runner, format!("{experiment}: {}", status.as_str()));
        if status != RunStatus::Passed {
            let failed = self
                .total
                .message()
                .split(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            self.total.set_message(format!("{failed} failed"));
        }
        self.total.inc(1);
        if self.total.position() == self.total.length().unwrap_or(0) {
            for (_, bar) in self
                .runners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                bar.finish();
            }
            self.total.finish();
        }
    }
}
