//! `libprofiler` or `libtcmalloc` for a service in a container whose image does not have it.
//!
//! The library and its dependencies outside the C library are mounted read-only under
//! `/.panther/tools/<plugin>/` and preloaded by those paths
//! ([`panther_toolmount::preload`]); the output folder is mounted at its own path, so the
//! profiles land in the results folder exactly as on localhost. The image's dynamic loader
//! loads them into the image's program, next to the image's C library, which must have
//! every version the carried files need: `check` compares when the image's files are known
//! ([`panther_toolmount::refuse::preload`]); otherwise [`Placed::start`] compares, from the
//! container's own `libc.so.6`, when monitoring starts.

use std::path::Path;

use panther_plugin_api::{HostMount, ServiceCommand, ServiceSite, ValidationContext};
use panther_toolmount::{
    glibc, merge_mounts,
    preload::{carry_library, image_cannot_run, settle_with_image, CarriedLibrary},
    symbol_versions,
};

use crate::container::{ObjectFiles, PinnedRoot};
use crate::library::append_preload;

/// Where a service runs, for a preloading profiler.
#[derive(Debug, Default)]
pub enum Placed {
    /// On this machine: the library is preloaded from where it is installed.
    #[default]
    Host,
    /// In a container.
    Container {
        /// The network environment and image, for messages.
        environment: String,
        /// The image, as the configuration names it.
        image: String,
        /// The carried library.
        carried: CarriedLibrary,
        /// The container's root, once monitoring started.
        root: Option<PinnedRoot>,
    },
}

impl Placed {
    /// Wraps `command` to preload `library`: from the host's path on this machine, carried
    /// under `/.panther/tools/<plugin>` into a container. `LD_PRELOAD` is appended to, so
    /// preloading tools stack.
    pub fn wrap(
        plugin: &str,
        library: &Path,
        command: &mut ServiceCommand,
    ) -> anyhow::Result<Placed> {
        let ServiceSite::Container {
            environment,
            image,
            libc,
            ..
        } = &command.site
        else {
            crate::library::preload(&mut command.env, library);
            return Ok(Placed::Host);
        };
        let bringing = || {
            format!(
                "{plugin}: bringing {} into the container of service `{}` ({environment}, \
                 image `{image}`)",
                library.display(),
                command.service
            )
        };
        let mut carried = carry_library(plugin, library).map_err(|err| err.context(bringing()))?;
        // A dependency the image has a copy of: the copy that serves both is preloaded.
        if let Some(libc) = libc {
            settle_with_image(&mut carried, &libc.libraries)
                .map_err(|why| anyhow::anyhow!("{}: {why}", bringing()))?;
        }
        // The host's own LD_PRELOAD means nothing in the container: only the command's.
        let mut preload = command.env.get("LD_PRELOAD").cloned();
        for file in &carried.preload {
            preload = Some(append_preload(preload.as_deref(), file));
        }
        if let Some(preload) = preload {
            command.env.insert("LD_PRELOAD".into(), preload);
        }
        let mut mounts = carried.mounts.clone();
        mounts.push(HostMount::same_path(&command.output_dir));
        merge_mounts(&mut command.mounts, &mounts)?;
        Ok(Placed::Container {
            environment: environment.clone(),
            image: image.clone(),
            carried,
            root: None,
        })
    }

    /// The library as the service's processes map it (for recognizing it in their memory
    /// maps), when it is not the host's path.
    pub fn mapped_library(&self) -> Option<&Path> {
        match self {
            Placed::Host => None,
            Placed::Container { carried, .. } => Some(&carried.library),
        }
    }

    /// When monitoring starts, with a process of the service: in a container, holds its root
    /// open (for symbolizing later) and checks the image's C library against what the
    /// carried files need. The error names the plugin, the service, where it runs and the
    /// missing version: the image's dynamic loader refuses such a program, and no profile
    /// could be written.
    pub fn start(&mut self, plugin: &str, service: &str, pid: u32) -> anyhow::Result<()> {
        let Placed::Container {
            environment,
            image,
            carried,
            root,
        } = self
        else {
            return Ok(());
        };
        let pinned = match PinnedRoot::of(pid) {
            Ok(pinned) => pinned,
            Err(err) => {
                tracing::warn!(
                    "{plugin}: the files of service `{service}`'s container cannot be read \
                     through /proc/{pid}/root ({err}): its profile will name the host's \
                     files, if any, at the container's paths"
                );
                return Ok(());
            }
        };
        if let Some(libc) = glibc::libc_under(&pinned.path()) {
            let why = image_cannot_run(carried, libc.version, &libc.files).or_else(|| {
                // An image whose files were not known at `check`: its own copies of the
                // carried dependencies were not weighed before the preload was set.
                let folder = pinned.join(libc.path.parent().unwrap_or(Path::new("/")));
                let libraries = symbol_versions::versioned_libraries_in(&folder);
                carried_copies_conflict(carried, &libraries)
            });
            if let Some(why) = why {
                anyhow::bail!(
                    "{plugin} cannot preload {} into service `{service}` in {environment} \
                     (image `{image}`): {why} ({})",
                    carried
                        .library
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy(),
                    libc.path.display()
                );
            }
        }
        *root = Some(pinned);
        Ok(())
    }

    /// Where the symbolizer reads the objects the service's profiles name.
    pub fn object_files(&mut self) -> ObjectFiles {
        match self {
            Placed::Host => ObjectFiles::default(),
            Placed::Container { carried, root, .. } => ObjectFiles {
                root: root.take(),
                mounted: carried
                    .mounts
                    .iter()
                    .map(|m| (m.target.clone(), m.source.clone()))
                    .collect(),
            },
        }
    }
}

/// Why the preloaded copies of carried dependencies cannot serve a program that has copies
/// of its own (`libraries`, from the container's files): a copy of the image's defines a
/// version the preloaded one lacks, which the program may need. None when they serve.
fn carried_copies_conflict(
    carried: &CarriedLibrary,
    libraries: &std::collections::BTreeMap<String, Vec<String>>,
) -> Option<String> {
    carried.preload.iter().skip(1).find_map(|inside| {
        let name = inside.file_name()?.to_str()?;
        let image_defines = libraries.get(name)?;
        let host = carried.host_file(inside)?;
        let host_defines = symbol_versions::defined(host).ok()?;
        let only_image = image_defines.iter().find(|v| !host_defines.contains(*v))?;
        Some(format!(
            "the image has its own {name}, which defines {only_image} that the preloaded \
             {} lacks: its program may need it and cannot have it (build the image from a \
             local folder so that `check` can choose the copy that serves both)",
            host.display()
        ))
    })
}

/// The library `check` compares with the images' C libraries: carried only when a service
/// runs in a container whose C library is known, since carrying runs the host's loader.
/// None when no such service exists or the library is not found (which `doctor` and the
/// plugin's instance report).
pub fn carried_for_check(
    plugin: &str,
    configured: Option<&Path>,
    names: &[&str],
    experiment: &ValidationContext,
) -> Option<CarriedLibrary> {
    let known = experiment
        .sites
        .values()
        .any(|site| matches!(site, ServiceSite::Container { libc: Some(_), .. }));
    if !known {
        return None;
    }
    let library = crate::library::resolve(configured, names, plugin, "library").ok()?;
    carry_library(plugin, &library).ok()
}
