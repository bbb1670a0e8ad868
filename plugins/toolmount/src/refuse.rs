//! What `check` says about services in containers that an execution environment cannot
//! reach there: one problem per service, naming the plugin, the service, where it runs and
//! why, so that nothing that passes `check` fails at run time for lack of a tool.

use panther_plugin_api::{Linkage, ServiceSite, ValidationContext};

/// A service in a container, as the messages name it.
struct Placed<'a> {
    service: &'a str,
    environment: &'a str,
    image: &'a str,
    linkage: Linkage,
    program: &'a str,
}

fn placed(experiment: &ValidationContext) -> Vec<Placed<'_>> {
    experiment
        .services
        .iter()
        .filter_map(|service| match experiment.sites.get(service) {
            Some(ServiceSite::Container {
                environment,
                image,
                linkage,
            }) => Some(Placed {
                service,
                environment,
                image,
                linkage: *linkage,
                program: experiment
                    .commands
                    .get(service)
                    .and_then(|c| c.first())
                    .map_or("", String::as_str),
            }),
            _ => None,
        })
        .collect()
}

/// For a wrapper whose tool is not carried into containers (yet): every service in one.
pub fn not_carried(plugin: &str, tool: &str, experiment: &ValidationContext) -> Vec<String> {
    placed(experiment)
        .into_iter()
        .map(|p| {
            format!(
                "{plugin} cannot bring {tool} into a container: service `{}` runs in {} \
                 (image `{}`); run it with a network environment of local processes \
                 (localhost, shadow_ns)",
                p.service, p.environment, p.image
            )
        })
        .collect()
}

/// For a wrapper carried into containers that preloads `library` into the program (valgrind's
/// `vgpreload_*.so`): a statically linked program cannot be preloaded.
pub fn needs_dynamic(plugin: &str, library: &str, experiment: &ValidationContext) -> Vec<String> {
    placed(experiment)
        .into_iter()
        .filter(|p| p.linkage == Linkage::Static)
        .map(|p| static_program(plugin, library, &p))
        .collect()
}

fn static_program(plugin: &str, library: &str, p: &Placed<'_>) -> String {
    format!(
        "{plugin} needs a dynamically linked program to preload {library}; service `{}` runs \
         a statically linked program ({} in image `{}`) in {}",
        p.service, p.program, p.image, p.environment
    )
}

/// For a wrapper that preloads `library` (`LD_PRELOAD`): a statically linked program cannot
/// be preloaded anywhere; and the library is not carried into containers (yet).
pub fn preload(plugin: &str, library: &str, experiment: &ValidationContext) -> Vec<String> {
    placed(experiment)
        .into_iter()
        .map(|p| match p.linkage {
            Linkage::Static => static_program(plugin, library, &p),
            _ => format!(
                "{plugin} cannot bring {library} into a container: service `{}` runs in {} \
                 (image `{}`); run it with a network environment of local processes \
                 (localhost, shadow_ns)",
                p.service, p.environment, p.image
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_programs_are_named_with_their_image() {
        let mut experiment = ValidationContext {
            services: vec!["server".into(), "client".into()],
            ..ValidationContext::default()
        };
        experiment
            .commands
            .insert("server".into(), vec!["/usr/local/bin/echo-server".into()]);
        experiment.sites.insert(
            "server".into(),
            ServiceSite::Container {
                environment: "docker_compose".into(),
                image: "echo-static".into(),
                linkage: Linkage::Static,
            },
        );
        let problems = preload("gperf_cpu", "libprofiler", &experiment);
        assert_eq!(
            problems,
            [
                "gperf_cpu needs a dynamically linked program to preload libprofiler; service \
              `server` runs a statically linked program (/usr/local/bin/echo-server in image \
              `echo-static`) in docker_compose"
            ]
        );
        let problems = not_carried("memcheck", "valgrind", &experiment);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("service `server` runs in docker_compose"));
    }
}
