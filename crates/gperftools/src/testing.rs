//! Test support for the plugins built on [`PreloadPlugin`](crate::PreloadPlugin), so that
//! their tests read their README and wrap a service the same way. Enabled by the `testing`
//! feature, in the plugins' dev-dependencies.

use std::path::PathBuf;

use panther_plugin_api::ServiceCommand;

use crate::ProfilerConfig;

/// The `[[execution]]` section that the first TOML block of a plugin's `readme` shows, read
/// as `C`. Panics unless the block is valid TOML, names `C`'s plugin and holds only its keys.
pub fn readme_config<C: ProfilerConfig>(readme: &str) -> C {
    let block = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block");
    let value: toml::Table = toml::from_str(block).expect("valid toml");
    let mut section = value["execution"].as_array().expect("[[execution]]")[0]
        .as_table()
        .expect("a table")
        .clone();
    assert_eq!(
        section
            .remove("plugin")
            .and_then(|p| p.as_str().map(String::from)),
        Some(C::PROFILER.plugin().to_string())
    );
    section.try_into().expect("the keys are the plugin's")
}

/// Service `s`'s command `prog`, writing into `/out`, which already preloads `library` (as
/// another preloading tool leaves it).
pub fn command_preloading(library: &str) -> ServiceCommand {
    let mut command = ServiceCommand {
        service: "s".into(),
        argv: vec!["prog".into()],
        output_dir: PathBuf::from("/out"),
        ..ServiceCommand::default()
    };
    command.env.insert("LD_PRELOAD".into(), library.into());
    command
}
