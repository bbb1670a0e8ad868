//! The reporter instances: the proxy pattern at the experiment's scope. They come from the
//! experiment's `[[report]]` sections, from `--report` on the command line (which replaces a
//! section of the same name), and from the default reporters (added when no instance of
//! their plugin is configured). Every one obeys `enable`/`disable`; the claims of the active
//! ones (stdout, files compared by their normalised path inside the results folder) are
//! exclusive.

use std::{path::Path, str::FromStr};

use panther_plugin_api::{PluginKind, Resource};

use crate::{dispatch::proxy::Proxy, experiment::PluginUse, names, results_path, scope::Resolved};

use super::{Builder, Origin, ReporterPlan, DEFAULT_REPORTERS};

/// A reporter asked for on the command line: `PLUGIN` or `PLUGIN=PATH` (`-` for stdout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRequest {
    /// The reporter plugin.
    pub plugin: String,
    /// Where it writes, when given.
    pub path: Option<String>,
}

impl FromStr for ReportRequest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (plugin, path) = match text.split_once('=') {
            Some((plugin, path)) => (plugin, Some(path.to_string())),
            None => (text, None),
        };
        if plugin.is_empty() {
            return Err(format!(
                "`{text}`: expected PLUGIN or PLUGIN=PATH, e.g. `json=-` or `junit=out/junit.xml`"
            ));
        }
        if path.as_deref() == Some("") {
            return Err(format!("`{text}`: the path is empty (use `-` for stdout)"));
        }
        Ok(ReportRequest {
            plugin: plugin.to_string(),
            path,
        })
    }
}

impl ReportRequest {
    /// How the request is shown in messages.
    fn shown(&self) -> String {
        match &self.path {
            Some(path) => format!("--report {}={path}", self.plugin),
            None => format!("--report {}", self.plugin),
        }
    }
}

pub(super) fn build(builder: &mut Builder<'_>, scope: &Resolved) -> Proxy<ReporterPlan> {
    let mut candidates = candidates(builder);
    let reporter_names: Vec<String> = candidates
        .iter()
        .flat_map(|(u, _)| [u.name.clone(), u.plugin.clone()])
        .collect();
    let registry = builder.registry;
    let is_reporter = |name: &str| {
        reporter_names.iter().any(|n| n == name)
            || registry.get(PluginKind::Reporter, name).is_some()
    };
    let mut proxy = Proxy::new();
    for (instance, origin) in candidates.drain(..) {
        let Some(plugin) = builder.usable(PluginKind::Reporter, &instance) else {
            continue;
        };
        let active = scope.is_enabled_among(&[&instance.name, &instance.plugin], is_reporter);
        let mut item = ReporterPlan {
            instance,
            plugin,
            files: Vec::new(),
            origin,
        };
        if !active {
            if let Err(err) = proxy.add_inactive(
                &item.instance.name.clone(),
                item.plugin.manifest.clone(),
                item,
            ) {
                builder.problem(String::new(), format!("report {err}"));
            }
            continue;
        }
        let Some(claims) = claims(builder, &mut item) else {
            continue;
        };
        let location = item.instance.location.clone();
        if let Err(err) = proxy.add(
            &item.instance.name.clone(),
            item.plugin.manifest.clone(),
            claims,
            item,
        ) {
            builder.problem(location, format!("report {err}"));
        }
    }
    proxy
}

/// Every reporter instance asked for, with who asked: sections, then the command line,
/// then the defaults.
fn candidates(builder: &mut Builder<'_>) -> Vec<(PluginUse, Origin)> {
    let options = builder.options;
    let mut candidates: Vec<(PluginUse, Origin)> = builder
        .experiment
        .reports
        .iter()
        .map(|r| (r.clone(), Origin::Experiment))
        .collect();
    let mut from_cli: Vec<String> = Vec::new();
    for request in &options.reports {
        let mut name = request.plugin.clone();
        let mut n = 1;
        while from_cli.contains(&name) {
            n += 1;
            name = format!("{}-{n}", request.plugin);
        }
        from_cli.push(name.clone());
        let own = match &request.path {
            Some(path) => serde_json::json!({ "path": path }),
            None => serde_json::json!({}),
        };
        let instance = PluginUse {
            config: options.plugin_defaults.merge(&request.plugin, &own),
            plugin: request.plugin.clone(),
            name,
            services: None,
            location: format!("the command line ({})", request.shown()),
        };
        // The command line wins over a section of the same name.
        candidates.retain(|(u, _)| u.name != instance.name);
        candidates.push((instance, Origin::Cli));
    }
    let (defaults, origin): (Vec<String>, Origin) = match &options.default_reporters {
        Some(names) => (names.clone(), Origin::Settings),
        None => (
            DEFAULT_REPORTERS.iter().map(|s| s.to_string()).collect(),
            Origin::BuiltIn,
        ),
    };
    for plugin in defaults {
        if candidates.iter().any(|(u, _)| u.plugin == plugin) {
            continue;
        }
        // A built-in default whose plugin is not loaded is left out; one the settings name
        // must exist.
        if origin == Origin::BuiltIn
            && builder
                .registry
                .get(PluginKind::Reporter, &plugin)
                .is_none()
        {
            continue;
        }
        candidates.push((
            PluginUse {
                config: options
                    .plugin_defaults
                    .merge(&plugin, &serde_json::json!({})),
                name: plugin.clone(),
                plugin: plugin.clone(),
                services: None,
                location: match origin {
                    Origin::Settings => format!("{}: `reporters`", settings_source(builder)),
                    _ => "the default reporters".to_string(),
                },
            },
            origin,
        ));
    }
    candidates
}

/// Where the settings were written: the host scope's source.
fn settings_source(builder: &Builder<'_>) -> String {
    builder
        .options
        .outer
        .iter()
        .find(|l| l.level == crate::scope::ScopeLevel::Host)
        .map_or_else(|| "the settings".to_string(), |l| l.source.clone())
}

/// The claims of an active reporter, its files normalised (and recorded in `item`); `None`
/// when they cannot be computed or a file would leave the results folder.
fn claims(builder: &mut Builder<'_>, item: &mut ReporterPlan) -> Option<Vec<Resource>> {
    let placement = builder.placement(&item.plugin);
    let claims = match item.plugin.claims_in(&placement, &item.instance.config) {
        Ok(claims) => claims,
        Err(err) => {
            builder.problem(item.instance.location.clone(), err.to_string());
            return None;
        }
    };
    let mut normalised = Vec::with_capacity(claims.len());
    let mut ok = true;
    for claim in claims {
        match claim {
            Resource::File(path) => match results_path::normalise(&path) {
                Ok(path) => {
                    item.files.push(path.clone());
                    normalised.push(Resource::File(path));
                }
                Err(why) => {
                    ok = false;
                    builder.problem(
                        item.instance.location.clone(),
                        format!(
                            "`{}` ({}): the report path `{}` {why}",
                            item.instance.name,
                            item.instance.plugin,
                            names::shown(&Path::new(&path).to_string_lossy()),
                        ),
                    );
                }
            },
            other => normalised.push(other),
        }
    }
    ok.then_some(normalised)
}
