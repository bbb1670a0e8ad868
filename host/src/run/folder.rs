//! The results folder of one run: made for this run alone, with the folder of the services'
//! logs, the ports the run picked and the record of its events.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use super::RunError;
use crate::{
    events::{EventBus, JsonlWriter, Observer},
    experiment::ServiceDef,
    ports::Ports,
};

/// The folder a run writes to, and the id made from it.
pub(super) struct RunFolder {
    /// The folder, absolute, so reports and plugins name files that can be opened from
    /// anywhere.
    pub dir: PathBuf,
    /// Where the services' output goes.
    pub services: PathBuf,
    /// The run's id.
    pub run_id: String,
}

impl RunFolder {
    /// Makes `<output_root>/<experiment>/<timestamp>/` and its `services` folder.
    pub fn create(output_root: &Path, experiment: &str) -> Result<Self, RunError> {
        // Exclusive: a folder (and the run id made from it) belongs to this run alone.
        let made =
            crate::run_dir::create(output_root, experiment).map_err(|source| RunError::Output {
                path: output_root.join(experiment),
                source,
            })?;
        let dir = std::fs::canonicalize(&made.path).unwrap_or(made.path);
        let services = dir.join("services");
        std::fs::create_dir_all(&services).map_err(|source| RunError::Output {
            path: services.clone(),
            source,
        })?;
        Ok(RunFolder {
            dir,
            services,
            run_id: made.run_id,
        })
    }

    /// Picks free ports for the services' `{port:NAME}` placeholders and, when there are
    /// any, writes them to `ports.json`: the run's own, for whoever reads its results.
    pub fn pick_ports(&self, services: &[ServiceDef]) -> Result<Ports, RunError> {
        let ports = Ports::pick(services).map_err(RunError::Ports)?;
        if !ports.is_empty() {
            let file = self.dir.join("ports.json");
            let json = serde_json::to_vec_pretty(&ports).unwrap_or_default();
            std::fs::write(&file, json)
                .map_err(|source| RunError::Output { path: file, source })?;
        }
        Ok(ports)
    }

    /// Records every event of the run in `events.jsonl`, and hands them to `observers`.
    pub fn record_events(
        &self,
        bus: &EventBus,
        observers: &[Arc<dyn Observer>],
    ) -> Result<(), RunError> {
        let file = self.dir.join("events.jsonl");
        let events =
            JsonlWriter::create(&file).map_err(|source| RunError::Output { path: file, source })?;
        bus.subscribe(Arc::new(events));
        for observer in observers {
            bus.subscribe(Arc::clone(observer));
        }
        Ok(())
    }
}
