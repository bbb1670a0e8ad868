//! What `check` says about services in containers that an execution environment cannot
//! reach there: one problem per service, naming the plugin, the service, where it runs and
//! why, so that nothing that passes `check` fails at run time for lack of a tool.

use panther_plugin_api::{Linkage, ServiceSite, ValidationContext};

use panther_plugin_api::ImageLibc;

use crate::{
    glibc::GlibcVersion,
    preload::{image_cannot_run, settle_with_image, CarriedLibrary},
};

/// A service in a container, as the messages name it.
struct Placed<'a> {
    service: &'a str,
    environment: &'a str,
    image: &'a str,
    linkage: Linkage,
    libc: Option<&'a ImageLibc>,
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
                libc,
            }) => Some(Placed {
                service,
                environment,
                image,
                linkage: *linkage,
                libc: libc.as_ref(),
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

/// For a wrapper that preloads `library` (`LD_PRELOAD`) into the program, carried into
/// containers as `carried` ([`crate::preload`]): a statically linked program cannot be
/// preloaded, and an image whose C library is known (built from a local folder) must have
/// every version the carried files need, and a copy of a carried dependency it holds itself
/// must be able to serve both ([`settle_with_image`]). `carried` is none when the library could not be
/// resolved on this machine (which is its own problem).
pub fn preload(
    plugin: &str,
    library: &str,
    carried: Option<&CarriedLibrary>,
    experiment: &ValidationContext,
) -> Vec<String> {
    placed(experiment)
        .into_iter()
        .filter_map(|p| {
            if p.linkage == Linkage::Static {
                return Some(static_program(plugin, library, &p));
            }
            let libc = p.libc?;
            let carried = carried?;
            let why = image_cannot_run(carried, GlibcVersion::parse(&libc.version), &libc.files)
                .or_else(|| settle_with_image(&mut carried.clone(), &libc.libraries).err())?;
            Some(format!(
                "{plugin} cannot preload {library} into service `{}` in {} (image `{}`): {why}",
                p.service, p.environment, p.image
            ))
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
                libc: None,
            },
        );
        let problems = preload("gperf_cpu", "libprofiler", None, &experiment);
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

    #[test]
    fn an_image_whose_c_library_is_too_old_is_named_with_both_plugins() {
        let mut experiment = ValidationContext {
            services: vec!["server".into()],
            ..ValidationContext::default()
        };
        let site = |libc: Option<&str>| ServiceSite::Container {
            environment: "docker_compose".into(),
            image: "old-glibc".into(),
            linkage: Linkage::Dynamic,
            libc: libc.map(|version| ImageLibc {
                version: version.into(),
                files: vec!["libc.so.6".into(), "libm.so.6".into()],
                libraries: Default::default(),
            }),
        };
        let carried = CarriedLibrary {
            library: "/.panther/tools/gperf_cpu/libprofiler.so.0.5.5".into(),
            preload: Vec::new(),
            mounts: Vec::new(),
            needs: Some((
                GlibcVersion([2, 34, 0]),
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30".into(),
            )),
            needs_files: vec![(
                "libm.so.6".into(),
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30".into(),
            )],
        };
        experiment
            .sites
            .insert("server".into(), site(Some("GLIBC_2.17")));
        let problems = preload("gperf_cpu", "libprofiler", Some(&carried), &experiment);
        assert_eq!(
            problems,
            [
                "gperf_cpu cannot preload libprofiler into service `server` in docker_compose \
                 (image `old-glibc`): the carried /usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30 \
                 needs GLIBC_2.34 of the C library, and the image's C library has GLIBC_2.17 at \
                 most"
            ]
        );
        // Recent enough, or not known before the run: nothing to say at check.
        for libc in [Some("GLIBC_2.36"), None] {
            experiment.sites.insert("server".into(), site(libc));
            assert!(preload("gperf_cpu", "libprofiler", Some(&carried), &experiment).is_empty());
        }
    }
}
