//! Carrying a host library that is preloaded into a program in a container (`LD_PRELOAD`),
//! such as gperftools' `libprofiler` and `libtcmalloc`.
//!
//! Unlike a carried tool, which runs on the host's loader and libraries, a preloaded library
//! is loaded by the *image's* dynamic loader into the *image's* program, next to the
//! program's own C library. So the library and its dependencies outside the C library
//! (`libstdc++`, `libgcc_s`, `libunwind`, …) are carried, and the C library's own files
//! never are. They are all preloaded by their mounted paths, rather than found through
//! `LD_LIBRARY_PATH`: setting that variable for the service would replace any value the
//! image sets (`ENV LD_LIBRARY_PATH`), and the paths name exactly the carried files. The
//! dependencies come in the reverse of the loader's listing (the deepest first, so that
//! `libgcc_s` comes before `libunwind`, which exports the same `_Unwind_*` functions, as it
//! does for a C++ program on the host).
//!
//! What the carried files need from the C library ([`CarriedLibrary::needs`]) is compared
//! with the image's C library, by `check` when the image's files are known and at run time
//! otherwise (see [`crate::glibc`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use panther_plugin_api::HostMount;

use crate::{carry_closure, glibc, glibc::GlibcVersion, listed_path, Closure, TOOL_ROOT};

/// A library carried into a container for preloading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedLibrary {
    /// The library itself, as the container sees it.
    pub library: PathBuf,
    /// What `LD_PRELOAD` gets, in order: the library, then its dependencies outside the C
    /// library, deepest first.
    pub preload: Vec<PathBuf>,
    /// The read-only mounts that put them there.
    pub mounts: Vec<HostMount>,
    /// The highest C library version a carried file needs, and the host file that needs it.
    pub needs: Option<(GlibcVersion, PathBuf)>,
}

impl CarriedLibrary {
    /// The host file behind a path of the container, when it is one of the carried files.
    pub fn host_file(&self, inside: &Path) -> Option<&Path> {
        self.mounts
            .iter()
            .find(|m| m.target == inside)
            .map(|m| m.source.as_path())
    }
}

/// The host's dynamic loader, which resolves a library's dependencies as they resolve when
/// the library is preloaded on the host: the one this process runs on.
fn host_loader() -> anyhow::Result<PathBuf> {
    let exe = std::fs::read("/proc/self/exe").context("reading /proc/self/exe")?;
    match crate::interpreter_of(&exe) {
        Some(Some(loader)) => Ok(loader),
        _ => bail!("this program has no dynamic loader to list a library's dependencies with"),
    }
}

/// The dependencies of a shared library on this machine, as its dynamic loader resolves
/// them (`ld.so --list`), C library excluded, deepest first.
fn dependencies(library: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let loader = host_loader()?;
    let output = std::process::Command::new(&loader)
        .arg("--list")
        .arg(library)
        .output()
        .with_context(|| format!("running `{} --list`", loader.display()))?;
    if !output.status.success() {
        bail!(
            "`{} --list {}` failed ({}): {}",
            loader.display(),
            library.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let listed = String::from_utf8_lossy(&output.stdout);
    let mut found = Vec::new();
    for line in listed.lines() {
        if line.contains("=> not found") {
            bail!(
                "{} needs a library this machine lacks: {}",
                library.display(),
                line.trim()
            );
        }
        let Some(path) = listed_path(line) else {
            continue;
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !glibc::is_part_of_glibc(name) {
            found.push(path);
        }
    }
    found.reverse();
    Ok(found)
}

/// Carries `library` (a host path) into containers under `/.panther/tools/<name>`.
pub fn carry_library(name: &str, library: &Path) -> anyhow::Result<CarriedLibrary> {
    let library = std::fs::canonicalize(library)
        .with_context(|| format!("resolving {}", library.display()))?;
    let libraries = dependencies(&library)?;
    let closure = Closure {
        program: library.clone(),
        interpreter: None,
        libraries,
    };
    let carried = carry_closure(name, &closure)?;
    let preload: Vec<PathBuf> = std::iter::once(&closure.program)
        .chain(&closure.libraries)
        .map(|file| carried.inside(file))
        .collect();
    let mut needs: Option<(GlibcVersion, PathBuf)> = None;
    for file in std::iter::once(&closure.program).chain(&closure.libraries) {
        if let Some(version) = glibc::needed(file)? {
            if needs.as_ref().is_none_or(|(highest, _)| version > *highest) {
                needs = Some((version, file.clone()));
            }
        }
    }
    Ok(CarriedLibrary {
        library: preload[0].clone(),
        preload,
        mounts: carried.mounts,
        needs,
    })
}

/// Why the C library `has` (the highest version it defines; none when it defines no GNU
/// version, as musl) cannot run `carried`, or none when it can.
pub fn libc_too_old(carried: &CarriedLibrary, has: Option<GlibcVersion>) -> Option<String> {
    let (needed, file) = carried.needs.as_ref()?;
    match has {
        Some(has) if has >= *needed => None,
        Some(has) => Some(format!(
            "the carried {} needs {needed} of the C library, and the image's C library has \
             {has} at most",
            file.display()
        )),
        None => Some(format!(
            "the carried {} needs {needed} of the GNU C library, and the image's C library \
             defines no GNU version",
            file.display()
        )),
    }
}

/// The folder of a container under which `name`'s files are mounted.
pub fn folder(name: &str) -> PathBuf {
    Path::new(TOOL_ROOT).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared library of this machine with dependencies outside the C library.
    fn some_library() -> Option<PathBuf> {
        [
            "/usr/lib/x86_64-linux-gnu/libprofiler.so.0",
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    }

    #[test]
    fn the_library_and_its_dependencies_are_carried_without_the_c_library() {
        let Some(library) = some_library() else {
            panic!("no libprofiler or libstdc++ on this machine");
        };
        let carried = carry_library("prof", &library).unwrap();
        assert!(carried.library.starts_with("/.panther/tools/prof"));
        assert_eq!(carried.preload[0], carried.library);
        for path in &carried.preload {
            let name = path.file_name().unwrap().to_str().unwrap();
            assert!(!glibc::is_part_of_glibc(name), "{name} is carried");
            assert!(carried.host_file(path).is_some_and(Path::is_file), "{path:?}");
        }
        assert!(carried.mounts.iter().all(|m| m.read_only));
        let (needed, _) = carried.needs.clone().expect("versioned C library symbols");
        let (_, here) = glibc::libc_under(Path::new("/")).unwrap();
        assert_eq!(libc_too_old(&carried, here), None);
        let old = GlibcVersion([2, 2, 0]);
        let why = libc_too_old(&carried, Some(old)).expect("too old");
        assert!(why.contains(&needed.to_string()), "{why}");
        assert!(why.contains("GLIBC_2.2 at most"), "{why}");
    }
}
