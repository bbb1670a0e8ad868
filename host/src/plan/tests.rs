//! The plan builder on plugins compiled into the test: no plugin file, no probe.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use panther_plugin_api::{
    schemars::JsonSchema, Context, Deployment, DeploymentPlan, EnvironmentStatus,
    ExecutionEnvironment, Manifest, NetworkEnvironment, Plugin, ProcessState, Reporter, Resource,
    Role, RunResult, ServiceCommand, ServiceSpec,
};
use serde::Deserialize;

use super::*;
use crate::experiment::{Experiment, PluginUse, ServiceDef};

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "panther_plugin_api::schemars")]
#[serde(deny_unknown_fields)]
struct NoConfig {}

struct Net;

impl Plugin for Net {
    type Config = NoConfig;
    fn manifest() -> Manifest {
        Manifest::new("net")
    }
    fn new(_: NoConfig, _: Context) -> anyhow::Result<Self> {
        Ok(Net)
    }
}

impl NetworkEnvironment for Net {
    fn setup_environment(&mut self, _: &DeploymentPlan) -> anyhow::Result<()> {
        Ok(())
    }
    fn deploy_service(&mut self, _: &ServiceSpec) -> anyhow::Result<Deployment> {
        Ok(Deployment::default())
    }
    fn wait_ready(&mut self, _: &str) -> anyhow::Result<()> {
        Ok(())
    }
    fn get_environment_status(&mut self) -> anyhow::Result<EnvironmentStatus> {
        Ok(EnvironmentStatus::default())
    }
    fn stop_service(&mut self, _: &str) -> anyhow::Result<ProcessState> {
        Ok(ProcessState::Pending)
    }
    fn teardown_environment(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Two tools that cannot share a service, like memcheck and helgrind.
macro_rules! grind {
    ($type:ident, $name:literal) => {
        struct $type;
        impl Plugin for $type {
            type Config = NoConfig;
            fn manifest() -> Manifest {
                Manifest::new($name)
                    .capability("grind")
                    .conflicts_with("grind")
            }
            fn new(_: NoConfig, _: Context) -> anyhow::Result<Self> {
                Ok($type)
            }
        }
        impl ExecutionEnvironment for $type {
            fn wrap(&mut self, command: ServiceCommand) -> anyhow::Result<ServiceCommand> {
                Ok(command)
            }
        }
    };
}
grind!(Mem, "mem");
grind!(Hel, "hel");

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "panther_plugin_api::schemars")]
#[serde(deny_unknown_fields)]
struct PathConfig {
    #[serde(default)]
    path: Option<String>,
}

/// A reporter claiming stdout for `-`, its file otherwise (`<name>.out` by default).
macro_rules! reporter {
    ($type:ident, $name:literal) => {
        struct $type;
        impl Plugin for $type {
            type Config = PathConfig;
            fn manifest() -> Manifest {
                Manifest::new($name)
            }
            fn claims(config: &PathConfig) -> Vec<Resource> {
                match config.path.as_deref() {
                    Some("-") => vec![Resource::Stdout],
                    Some(path) => vec![Resource::File(path.into())],
                    None => vec![Resource::File(concat!($name, ".out").into())],
                }
            }
            fn new(_: PathConfig, _: Context) -> anyhow::Result<Self> {
                Ok($type)
            }
        }
        impl Reporter for $type {
            fn report(&mut self, _: &RunResult) -> anyhow::Result<()> {
                Ok(())
            }
        }
    };
}
reporter!(Json, "json");
reporter!(Junit, "junit");

fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.insert_network_environment::<Net>();
    registry.insert_execution_environment::<Mem>();
    registry.insert_execution_environment::<Hel>();
    registry.insert_reporter::<Json>();
    registry.insert_reporter::<Junit>();
    registry
}

fn instance(plugin: &str, config: serde_json::Value) -> PluginUse {
    PluginUse {
        plugin: plugin.into(),
        name: plugin.into(),
        services: None,
        config,
        location: format!("e.toml ({plugin})"),
    }
}

fn service(name: &str, scope: ScopeSettings) -> ServiceDef {
    ServiceDef {
        name: name.into(),
        command: vec!["/bin/true".into()],
        cwd: PathBuf::from("."),
        env: BTreeMap::new(),
        depends_on: Vec::new(),
        ready: None,
        ready_port: None,
        role: Role::Client,
        expect_exit: 0,
        scope,
        location: format!("e.toml ({name})"),
    }
}

fn experiment(services: Vec<ServiceDef>, execution: Vec<PluginUse>) -> Experiment {
    Experiment {
        path: "e.toml".into(),
        name: "e".into(),
        description: None,
        timeout: Duration::from_secs(5),
        timeout_origin: Origin::Experiment,
        output: None,
        scope: ScopeSettings::default(),
        network: instance("net", serde_json::json!({})),
        network_origin: Origin::Experiment,
        execution,
        services,
        reports: Vec::new(),
        notes: Vec::new(),
        warnings: Vec::new(),
    }
}

fn disable(names: &[&str]) -> ScopeSettings {
    ScopeSettings {
        disable: names.iter().map(|n| n.to_string()).collect(),
        ..ScopeSettings::default()
    }
}

fn accepted(result: Result<Plan, ExperimentError>) -> Plan {
    result.unwrap_or_else(|err| panic!("{err}"))
}

fn problems(result: Result<Plan, ExperimentError>) -> String {
    match result {
        Ok(_) => panic!("the plan was accepted"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn incompatible_tools_on_different_services_by_disabling() {
    let registry = registry();
    let both = vec![
        instance("mem", serde_json::json!({})),
        instance("hel", serde_json::json!({})),
    ];
    let apart = experiment(
        vec![
            service("a", disable(&["hel"])),
            service("b", disable(&["mem"])),
        ],
        both.clone(),
    );
    let plan = accepted(build(&registry, &apart, &PlanOptions::default()));
    let stacks: Vec<Vec<&str>> = plan
        .services
        .iter()
        .map(|s| s.extensions.names().collect())
        .collect();
    assert_eq!(stacks, [["mem"], ["hel"]]);

    let together = experiment(vec![service("a", ScopeSettings::default())], both);
    let err = problems(build(&registry, &together, &PlanOptions::default()));
    assert!(
        err.contains("on service `a` (e.toml (a)): `hel` cannot run with `mem`"),
        "{err}"
    );
}

#[test]
fn default_reporters_obey_the_scopes() {
    let registry = registry();
    let mut exp = experiment(vec![service("a", ScopeSettings::default())], Vec::new());
    let plan = accepted(build(&registry, &exp, &PlanOptions::default()));
    let active: Vec<(&str, Origin)> = plan
        .active_reporters()
        .map(|r| (r.instance.name.as_str(), r.origin))
        .collect();
    assert_eq!(
        active,
        [("json", Origin::BuiltIn), ("junit", Origin::BuiltIn)]
    );

    exp.scope = disable(&["junit"]);
    let host = Layer::host("settings.toml", disable(&["json"]));
    let options = PlanOptions {
        outer: vec![host],
        ..PlanOptions::default()
    };
    let plan = accepted(build(&registry, &exp, &options));
    assert_eq!(plan.active_reporters().count(), 0);
    assert_eq!(plan.reporters.len(), 2, "kept, inactive");
}

#[test]
fn claims_compare_normalised_paths_and_stdout_is_claimed_once() {
    let registry = registry();
    let mut exp = experiment(vec![service("a", ScopeSettings::default())], Vec::new());
    exp.reports = vec![instance("json", serde_json::json!({ "path": "./r/x.txt" }))];
    let options = PlanOptions {
        reports: vec!["junit=r//x.txt".parse().unwrap()],
        ..PlanOptions::default()
    };
    let err = problems(build(&registry, &exp, &options));
    assert!(
        err.contains("report `junit` claims file r/x.txt, which `json` already claims"),
        "{err}"
    );

    exp.reports.clear();
    let options = PlanOptions {
        reports: vec!["json=-".parse().unwrap(), "junit=-".parse().unwrap()],
        ..PlanOptions::default()
    };
    let err = problems(build(&registry, &exp, &options));
    assert!(
        err.contains("`junit` claims stdout, which `json` already claims"),
        "{err}"
    );
}

#[test]
fn output_precedence() {
    let registry = registry();
    let mut exp = experiment(vec![service("a", ScopeSettings::default())], Vec::new());
    let output = |exp: &Experiment, cli: Option<&str>, settings: Option<&str>| {
        let options = PlanOptions {
            output: cli.map(PathBuf::from),
            settings_output: settings.map(PathBuf::from),
            ..PlanOptions::default()
        };
        let plan = accepted(build(&registry, exp, &options));
        (plan.output.0.display().to_string(), plan.output.1)
    };
    assert_eq!(
        output(&exp, None, None),
        ("results".into(), Origin::BuiltIn)
    );
    assert_eq!(
        output(&exp, None, Some("s")),
        ("s".into(), Origin::Settings)
    );
    exp.output = Some("f".into());
    assert_eq!(
        output(&exp, None, Some("s")),
        ("f".into(), Origin::Experiment)
    );
    assert_eq!(
        output(&exp, Some("c"), Some("s")),
        ("c".into(), Origin::Cli)
    );
}

#[test]
fn names_in_outer_scopes_must_name_something() {
    let registry = registry();
    let exp = experiment(vec![service("a", ScopeSettings::default())], Vec::new());
    let mut scope = disable(&["jsno"]);
    scope.drivers.insert("reporter".into(), "json".into());
    let options = PlanOptions {
        outer: vec![Layer::host("settings.toml", scope)],
        ..PlanOptions::default()
    };
    let err = problems(build(&registry, &exp, &options));
    assert!(
        err.contains(
            "settings.toml: `disable`: `jsno` names no plugin or instance (did you mean `json`?)"
        ),
        "{err}"
    );
    assert!(err.contains("`reporter` is not a driver type"), "{err}");
}

#[test]
fn a_scope_chooses_the_driver_when_the_file_does_not() {
    let registry = registry();
    let mut exp = experiment(vec![service("a", ScopeSettings::default())], Vec::new());
    exp.network = instance("localhost", serde_json::json!({}));
    exp.network_origin = Origin::BuiltIn;
    let mut scope = ScopeSettings::default();
    scope
        .drivers
        .insert("network_environment".into(), "net".into());
    let options = PlanOptions {
        outer: vec![Layer::host("settings.toml", scope.clone())],
        ..PlanOptions::default()
    };
    let plan = accepted(build(&registry, &exp, &options));
    assert_eq!(plan.network.instance.plugin, "net");
    assert_eq!(plan.network.origin, Origin::Settings);

    scope
        .drivers
        .insert("network_environment".into(), "nte".into());
    let options = PlanOptions {
        outer: vec![Layer::host("settings.toml", scope)],
        ..PlanOptions::default()
    };
    let err = problems(build(&registry, &exp, &options));
    assert!(err.contains("(did you mean `net`?)"), "{err}");
}
