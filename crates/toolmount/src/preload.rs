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
//! What the carried files need from the C library ([`CarriedLibrary::needs`], and its
//! files such as `libm.so.6`, [`CarriedLibrary::needs_files`]) must be in the image: the C
//! library's files are never carried, since they must be of the image's own build (they
//! call each other's private functions). It is compared with the image's C library by
//! `check` when the image's files are known, and when monitoring starts otherwise (see
//! [`crate::glibc`]). An image with a GNU C library normally has all of its files (Debian's
//! `libc6` ships them together); a hand-made image that holds only the files its program
//! links may lack `libm.so.6`, which `libstdc++` needs.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use panther_plugin_api::HostMount;

use crate::{carry_closure, glibc, glibc::GlibcVersion, symbol_versions, Closure, TOOL_ROOT};

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
    /// The C library's files a carried file needs besides `libc.so.6` (`libm.so.6`), each
    /// with the first host file that needs it: the image must have them.
    pub needs_files: Vec<(String, PathBuf)>,
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
    let mut found: Vec<PathBuf> = crate::listed_dependencies(&host_loader()?, library)?
        .into_iter()
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            !glibc::is_part_of_glibc(name)
        })
        .collect();
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
    let mut needs_files: Vec<(String, PathBuf)> = Vec::new();
    for file in std::iter::once(&closure.program).chain(&closure.libraries) {
        let found = glibc::needed(file)?;
        if let Some(version) = found.highest {
            if needs.as_ref().is_none_or(|(highest, _)| version > *highest) {
                needs = Some((version, file.clone()));
            }
        }
        for name in found.files {
            let own = name == "libc.so.6" || name.starts_with("ld-");
            if !own && !needs_files.iter().any(|(n, _)| *n == name) {
                needs_files.push((name, file.clone()));
            }
        }
    }
    Ok(CarriedLibrary {
        library: preload[0].clone(),
        preload,
        mounts: carried.mounts,
        needs,
        needs_files,
    })
}

/// Why an image's C library cannot run `carried`, or none when it can: `version` is the
/// highest version it defines (none when it defines no GNU version, as musl), `files` its
/// files present next to its `libc.so.6`.
pub fn image_cannot_run(
    carried: &CarriedLibrary,
    version: Option<GlibcVersion>,
    files: &[String],
) -> Option<String> {
    if let Some((needed, file)) = &carried.needs {
        match version {
            Some(has) if has >= *needed => {}
            Some(has) => {
                return Some(format!(
                    "the carried {} needs {needed} of the C library, and the image's C library \
                     has {has} at most",
                    file.display()
                ))
            }
            None => {
                return Some(format!(
                    "the carried {} needs {needed} of the GNU C library, and the image's C \
                     library defines no GNU version",
                    file.display()
                ))
            }
        }
    }
    let missing = carried
        .needs_files
        .iter()
        .find(|(name, _)| !files.contains(name))?;
    Some(format!(
        "the carried {} needs {} of the C library, which the image does not have next to its \
         libc.so.6 (the C library's files are never carried: they must be of the image's own \
         build)",
        missing.1.display(),
        missing.0
    ))
}

/// Decides, for each carried dependency of which the image holds a copy of its own (same
/// file name, `image` as [`ImageLibc::libraries`](panther_plugin_api::ImageLibc) lists
/// them), which copy the process loads: one process loads a library of a given name once,
/// for the program and the carried library alike.
///
/// - The image's copy, when it defines every version the carried files need from it: the
///   program keeps its own library (however much newer), and the dependency is no longer
///   preloaded.
/// - Else the carried copy, when it defines every version the image's copy defines: the
///   program gets a newer copy of its own library, which serves it.
/// - Else neither serves both, and the answer says why; `check` refuses the pair.
pub fn settle_with_image(
    carried: &mut CarriedLibrary,
    image: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<(), String> {
    let carried_files: Vec<PathBuf> = carried.mounts.iter().map(|m| m.source.clone()).collect();
    let mut served_by_image = Vec::new();
    for inside in carried.preload.iter().skip(1) {
        let Some(name) = inside.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(image_defines) = image.get(name) else {
            continue;
        };
        let image_defines: BTreeSet<&str> = image_defines.iter().map(String::as_str).collect();
        let mut missing_in_image: Option<(String, &Path)> = None;
        for file in &carried_files {
            let needed = symbol_versions::needed_from(file, name).unwrap_or_default();
            if let Some(version) = needed.iter().find(|v| !image_defines.contains(v.as_str())) {
                missing_in_image = Some((version.clone(), file));
                break;
            }
        }
        let Some((version, needer)) = missing_in_image else {
            served_by_image.push(inside.clone());
            continue;
        };
        let host = carried.host_file(inside).map(Path::to_path_buf);
        let host_defines = host
            .as_deref()
            .and_then(|h| symbol_versions::defined(h).ok())
            .unwrap_or_default();
        if let Some(only_image) = image_defines.iter().find(|v| !host_defines.contains(**v)) {
            return Err(format!(
                "the image has its own {name}, which lacks {version} that the carried {} \
                 needs, and the carried {name} lacks {only_image} that the image's defines \
                 (its programs may need it): one process loads one {name}, and neither \
                 serves both",
                needer.display()
            ));
        }
    }
    carried.preload.retain(|p| !served_by_image.contains(p));
    Ok(())
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

    /// libprofiler needs libstdc++; an image with its own copy keeps it when it serves both.
    #[test]
    fn the_copy_of_a_dependency_that_serves_both_is_preloaded() {
        let profiler = Path::new("/usr/lib/x86_64-linux-gnu/libprofiler.so.0");
        assert!(
            profiler.is_file(),
            "no libprofiler on this machine (libgoogle-perftools4)"
        );
        let carried = carry_library("prof", profiler).unwrap();
        let is_libstdcxx = |p: &PathBuf| p.ends_with("libstdc++.so.6");
        assert!(
            carried.preload.iter().any(is_libstdcxx),
            "{:?}",
            carried.preload
        );
        let host_copy = carried
            .preload
            .iter()
            .find(|p| is_libstdcxx(p))
            .and_then(|p| carried.host_file(p))
            .unwrap()
            .to_path_buf();
        let host_defines: Vec<String> = symbol_versions::defined(&host_copy)
            .unwrap()
            .into_iter()
            .collect();
        let image = |versions: Vec<String>| {
            std::collections::BTreeMap::from([("libstdc++.so.6".to_string(), versions)])
        };

        // The image's copy defines all the host's and one more (a newer build): the program
        // keeps it, and libprofiler uses it too.
        let mut newer = host_defines.clone();
        newer.push("GLIBCXX_3.4.99".into());
        let mut settled = carried.clone();
        settle_with_image(&mut settled, &image(newer)).unwrap();
        assert!(
            !settled.preload.iter().any(is_libstdcxx),
            "{:?}",
            settled.preload
        );
        assert_eq!(settled.preload[0], carried.preload[0]);

        // An older copy that lacks what libprofiler needs: the carried, newer one serves both.
        let mut settled = carried.clone();
        settle_with_image(&mut settled, &image(vec!["GLIBCXX_3.4".into()])).unwrap();
        assert_eq!(settled.preload, carried.preload);

        // Older for libprofiler and newer for the program: neither serves both.
        let mut settled = carried.clone();
        let why = settle_with_image(
            &mut settled,
            &image(vec!["GLIBCXX_3.4".into(), "GLIBCXX_3.4.99".into()]),
        )
        .unwrap_err();
        assert!(
            why.contains("the image has its own libstdc++.so.6"),
            "{why}"
        );
        assert!(
            why.contains("lacks GLIBCXX_3.4.99 that the image's defines"),
            "{why}"
        );
        // Unrelated libraries of the image change nothing.
        let mut settled = carried.clone();
        let other = std::collections::BTreeMap::from([(
            "libz.so.1".to_string(),
            vec!["ZLIB_1.2.9".to_string()],
        )]);
        settle_with_image(&mut settled, &other).unwrap();
        assert_eq!(settled.preload, carried.preload);
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
            assert!(
                carried.host_file(path).is_some_and(Path::is_file),
                "{path:?}"
            );
        }
        assert!(carried.mounts.iter().all(|m| m.read_only));
        let (needed, _) = carried.needs.clone().expect("versioned C library symbols");
        let here = glibc::libc_under(Path::new("/")).unwrap();
        assert_eq!(image_cannot_run(&carried, here.version, &here.files), None);
        let old = GlibcVersion([2, 2, 0]);
        let why = image_cannot_run(&carried, Some(old), &here.files).expect("too old");
        assert!(why.contains(&needed.to_string()), "{why}");
        assert!(why.contains("GLIBC_2.2 at most"), "{why}");
        if let Some((name, _)) = carried.needs_files.first() {
            let fewer: Vec<String> = here.files.iter().filter(|f| *f != name).cloned().collect();
            let why = image_cannot_run(&carried, here.version, &fewer).expect("a file missing");
            assert!(
                why.contains(&format!("needs {name} of the C library")),
                "{why}"
            );
        }
    }
}
