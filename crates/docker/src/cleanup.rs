//! Removing what runs created, found by label: a run's own teardown, and `panther-host clean`
//! for runs whose host is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::bail;
use bollard::{
    query_parameters::{
        ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
        ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
        RemoveVolumeOptionsBuilder,
    },
    Docker,
};
use futures_util::future::join_all;

use crate::{
    engine::{api_error, is_not_found},
    labels::{self, owner_alive},
};

type Filters = HashMap<String, Vec<String>>;

fn label_filter(key: &str, value: &str) -> Filters {
    HashMap::from([("label".to_string(), vec![format!("{key}={value}")])])
}

/// Removes every container (with its anonymous volumes), network, volume and image labelled
/// with this run, in that order. Returns what it removed; fails with every removal that
/// failed (after trying them all).
pub async fn remove_run(docker: &Docker, run_id: &str) -> anyhow::Result<Vec<String>> {
    remove_matching(docker, &label_filter(labels::RUN, run_id)).await
}

/// Removes everything matching `filters` (containers first, images last).
pub async fn remove_matching(docker: &Docker, filters: &Filters) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut failed = Vec::new();

    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(filters)
                .build(),
        ))
        .await
        .map_err(|err| anyhow::anyhow!("listing containers: {}", api_error(&err)))?;
    let results = join_all(containers.iter().map(|c| async move {
        let id = c.id.clone().unwrap_or_default();
        let name = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| id.clone());
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(&id, Some(options)).await {
            Ok(()) => Ok(format!("container {name}")),
            Err(err) if is_not_found(&err) => Ok(format!("container {name}")),
            Err(err) => Err(format!("container {name}: {}", api_error(&err))),
        }
    }))
    .await;
    for result in results {
        match result {
            Ok(what) => removed.push(what),
            Err(why) => failed.push(why),
        }
    }

    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(filters)
                .build(),
        ))
        .await
        .map_err(|err| anyhow::anyhow!("listing networks: {}", api_error(&err)))?;
    for network in networks {
        let name = network.name.unwrap_or_default();
        let id = network.id.unwrap_or_else(|| name.clone());
        match remove_network(docker, &id).await {
            Ok(()) => removed.push(format!("network {name}")),
            Err(err) if is_not_found(&err) => {}
            Err(err) => failed.push(format!("network {name}: {}", api_error(&err))),
        }
    }

    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(filters)
                .build(),
        ))
        .await
        .map_err(|err| anyhow::anyhow!("listing volumes: {}", api_error(&err)))?;
    for volume in volumes.volumes.unwrap_or_default() {
        let options = RemoveVolumeOptionsBuilder::default().force(true).build();
        match docker.remove_volume(&volume.name, Some(options)).await {
            Ok(()) => removed.push(format!("volume {}", volume.name)),
            Err(err) if is_not_found(&err) => {}
            Err(err) => failed.push(format!("volume {}: {}", volume.name, api_error(&err))),
        }
    }

    let images = docker
        .list_images(Some(
            ListImagesOptionsBuilder::default().filters(filters).build(),
        ))
        .await
        .map_err(|err| anyhow::anyhow!("listing images: {}", api_error(&err)))?;
    for image in images {
        let name = image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        match docker.remove_image(&image.id, Some(options), None).await {
            Ok(_) => removed.push(format!("image {name}")),
            Err(err) if is_not_found(&err) => {}
            Err(err) => failed.push(format!("image {name}: {}", api_error(&err))),
        }
    }

    if failed.is_empty() {
        Ok(removed)
    } else {
        bail!("could not remove {}", failed.join("; "))
    }
}

/// Removes what runs made by `plugin` left behind when the host that made them is gone (it
/// was killed), and the layers of builds that were cut off with their host (see
/// [`crate::builds`]): runs and builds whose host still runs are left alone. Returns what it removed, each
/// with its run; what the engine refuses to remove is logged as a warning.
pub async fn clean_stale(docker: &Docker, plugin: &str) -> anyhow::Result<Vec<String>> {
    let filters = label_filter(labels::PLUGIN, plugin);
    // Run id → its owner tokens, from every kind of object that carries them.
    let mut runs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut note = |labels: Option<&HashMap<String, String>>| {
        if let Some(labels) = labels {
            if let Some(run) = labels.get(labels::RUN) {
                let owner = labels.get(labels::OWNER).cloned().unwrap_or_default();
                runs.entry(run.clone()).or_default().insert(owner);
            }
        }
    };
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|err| anyhow::anyhow!("listing containers: {}", api_error(&err)))?;
    for c in &containers {
        note(c.labels.as_ref());
    }
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|err| anyhow::anyhow!("listing networks: {}", api_error(&err)))?;
    for n in &networks {
        note(n.labels.as_ref());
    }
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|err| anyhow::anyhow!("listing volumes: {}", api_error(&err)))?;
    for v in volumes.volumes.iter().flatten() {
        note(Some(&v.labels));
    }
    let images = docker
        .list_images(Some(
            ListImagesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|err| anyhow::anyhow!("listing images: {}", api_error(&err)))?;
    for i in &images {
        note(Some(&i.labels));
    }

    // Layers of builds cut off with their host: untagged, unlabelled, found by journal.
    let mut removed = crate::builds::clean_stale(docker).await;
    for (run, owners) in runs {
        if owners.iter().any(|o| owner_alive(o)) {
            tracing::debug!(run, "still running; left alone");
            continue;
        }
        // One run the engine cannot fully clean (a network it keeps "active endpoints" on
        // after its containers are gone, which only an engine restart clears) must not stop
        // the others from being cleaned: it is reported loudly instead.
        match remove_run(docker, &run).await {
            Ok(items) => {
                removed.extend(items.into_iter().map(|item| format!("{item} (run {run})")))
            }
            Err(err) => tracing::warn!(
                run,
                "{err:#}; the engine refused it, restarting the Docker daemon clears it"
            ),
        }
    }
    Ok(removed)
}

/// Removes a network. The engine detaches the endpoints of containers it has just removed a
/// moment after answering, and refuses the network meanwhile ("has active endpoints"), so
/// that refusal is retried for two seconds.
async fn remove_network(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    let mut attempts = 0;
    loop {
        match docker.remove_network(id).await {
            Err(err) if attempts < 20 && api_error(&err).contains("active endpoints") => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}
