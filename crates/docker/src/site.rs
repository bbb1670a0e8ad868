//! What a container will run, told from local files before the engine is involved: how the
//! program of a service built from a local folder is linked. `check` asks it (through the
//! network environments' `sites`), so that a wrapper that cannot work on that program (a
//! library preloaded into a static binary) is refused before anything runs.
//!
//! Only what the files say for sure counts: a program the Dockerfile copies from the build
//! folder (`COPY`/`ADD`, resolved through `ENV PATH` for a bare name) is read; anything else
//! (an image only the engine holds, a program of the base image) is
//! [`Linkage::Unknown`].

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use panther_plugin_api::{ImageLibc, Linkage};

use crate::image::BuildSpec;

/// The `PATH` of an image that sets none (the engine's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How `program` (a command's first word) is linked in the image `build` makes.
pub fn linkage_in_build(build: &BuildSpec, program: &str) -> Linkage {
    let dockerfile = match &build.dockerfile {
        Some(file) => build.context.join(file),
        None => build.context.join("Dockerfile"),
    };
    let Ok(text) = std::fs::read_to_string(&dockerfile) else {
        return Linkage::Unknown;
    };
    let image = Dockerfile::parse(&text);
    image
        .candidates(program)
        .into_iter()
        .find_map(|inside| image.source_of(&build.context, &inside))
        .map_or(Linkage::Unknown, |file| host_linkage(&file))
}

/// The GNU C library of the image `build` makes (the highest version it defines, its files),
/// when the Dockerfile copies a `libc.so.6` from the build folder to where the image's
/// dynamic loader looks for it; none when the files do not tell (a base image's C library,
/// no C library at all).
pub fn libc_in_build(build: &BuildSpec) -> Option<ImageLibc> {
    let dockerfile = match &build.dockerfile {
        Some(file) => build.context.join(file),
        None => build.context.join("Dockerfile"),
    };
    let text = std::fs::read_to_string(&dockerfile).ok()?;
    let image = Dockerfile::parse(&text);
    let (inside, libc) = panther_toolmount::glibc::libc_candidates()
        .into_iter()
        .find_map(|inside| Some((inside.clone(), image.source_of(&build.context, &inside)?)))?;
    let version = panther_toolmount::glibc::defined(&libc).ok().flatten()?;
    let folder = inside.parent()?;
    let files = panther_toolmount::glibc::FILES
        .iter()
        .filter(|name| {
            image
                .source_of(&build.context, &folder.join(name))
                .is_some()
        })
        .map(|name| name.to_string())
        .collect();
    let next_to_it = image.files_in(&build.context, folder);
    let libraries = panther_toolmount::symbol_versions::versioned_libraries(
        next_to_it
            .iter()
            .map(|(name, local)| (name.clone(), local.as_path())),
    );
    Some(ImageLibc {
        version: version.to_string(),
        files,
        libraries,
    })
}

/// How a file of this machine is linked ([`Linkage::Unknown`] when it cannot be read).
pub fn host_linkage(file: &Path) -> Linkage {
    panther_toolmount::linkage(file).unwrap_or(Linkage::Unknown)
}

/// What the last stage of a Dockerfile copies from the build folder, and its `PATH`.
#[derive(Debug, Default)]
struct Dockerfile {
    path: Option<String>,
    /// `(sources, destination)` in order.
    copies: Vec<(Vec<String>, String)>,
}

impl Dockerfile {
    fn parse(text: &str) -> Dockerfile {
        let mut image = Dockerfile::default();
        let joined = text.replace("\\\n", " ");
        for line in joined.lines().map(str::trim) {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            match word.to_ascii_uppercase().as_str() {
                "FROM" => image = Dockerfile::default(),
                "ENV" => {
                    for pair in rest.split_whitespace() {
                        if let Some(path) = pair.strip_prefix("PATH=") {
                            image.path = Some(path.trim_matches('"').to_string());
                        }
                    }
                    if let Some(path) = rest.trim().strip_prefix("PATH ") {
                        image.path = Some(path.trim().trim_matches('"').to_string());
                    }
                }
                "COPY" | "ADD" => {
                    let words: Vec<String> = match rest.trim().strip_prefix('[') {
                        Some(array) => array
                            .trim_end_matches(']')
                            .split(',')
                            .map(|w| w.trim().trim_matches('"').to_string())
                            .collect(),
                        None => rest.split_whitespace().map(String::from).collect(),
                    };
                    if words.iter().any(|w| w.starts_with("--from")) {
                        continue;
                    }
                    let words: Vec<String> =
                        words.into_iter().filter(|w| !w.starts_with("--")).collect();
                    if let Some((dest, sources)) = words.split_last() {
                        image.copies.push((sources.to_vec(), dest.clone()));
                    }
                }
                _ => {}
            }
        }
        image
    }

    /// Where `program` may be inside the image: itself when it has a `/`, else on `PATH`.
    fn candidates(&self, program: &str) -> Vec<PathBuf> {
        if program.contains('/') {
            return vec![PathBuf::from(program)];
        }
        self.path
            .as_deref()
            .unwrap_or(DEFAULT_PATH)
            .split(':')
            .map(|dir| Path::new(dir).join(program))
            .collect()
    }

    /// The files the copies put in `folder` of the image, by name, with the build folder's
    /// file for each (the last copy winning).
    fn files_in(&self, context: &Path, folder: &Path) -> BTreeMap<String, PathBuf> {
        let mut found = BTreeMap::new();
        for (sources, dest) in &self.copies {
            let into_folder = dest.ends_with('/') || sources.len() > 1;
            for source in sources {
                let local = context.join(source.trim_start_matches("./"));
                if local.is_dir() {
                    let Ok(rest) = folder.strip_prefix(dest) else {
                        continue;
                    };
                    let Ok(entries) = std::fs::read_dir(local.join(rest)) else {
                        continue;
                    };
                    for entry in entries.flatten() {
                        if entry.path().is_file() {
                            let name = entry.file_name().to_string_lossy().into_owned();
                            found.insert(name, entry.path());
                        }
                    }
                    continue;
                }
                let (target, name) = if into_folder {
                    (Path::new(dest), local.file_name())
                } else {
                    (
                        Path::new(dest).parent().unwrap_or(Path::new("/")),
                        Path::new(dest).file_name(),
                    )
                };
                if let (true, Some(name)) = (target == folder && local.is_file(), name) {
                    found.insert(name.to_string_lossy().into_owned(), local.clone());
                }
            }
        }
        found
    }

    /// The build folder's file that ends up at `inside`, the last copy winning.
    fn source_of(&self, context: &Path, inside: &Path) -> Option<PathBuf> {
        for (sources, dest) in self.copies.iter().rev() {
            let into_folder = dest.ends_with('/') || sources.len() > 1;
            for source in sources {
                let local = context.join(source.trim_start_matches("./"));
                let found = if local.is_dir() {
                    inside.strip_prefix(dest).ok().map(|rest| local.join(rest))
                } else if into_folder {
                    let name = local.file_name()?;
                    (Path::new(dest).join(name) == inside).then_some(local.clone())
                } else {
                    (Path::new(dest) == inside).then_some(local.clone())
                };
                if let Some(file) = found.filter(|f| f.is_file()) {
                    return Some(file);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_copied_from_the_build_folder_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path();
        std::fs::create_dir_all(context.join("rootfs/usr/local/bin")).unwrap();
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        std::fs::copy(&sh, context.join("rootfs/usr/local/bin/server")).unwrap();
        std::fs::write(context.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nCOPY rootfs/ /\nCOPY tool /opt/\nENV PATH=/usr/local/bin:/bin\n",
        )
        .unwrap();
        let build = BuildSpec::new(context);
        assert_eq!(linkage_in_build(&build, "server"), Linkage::Dynamic);
        assert_eq!(
            linkage_in_build(&build, "/usr/local/bin/server"),
            Linkage::Dynamic
        );
        // Not an ELF program; not in the image; on a PATH the image does not have.
        assert_eq!(linkage_in_build(&build, "/opt/tool"), Linkage::Unknown);
        assert_eq!(linkage_in_build(&build, "/bin/nothing"), Linkage::Unknown);
        assert_eq!(linkage_in_build(&build, "tool"), Linkage::Unknown);
        // No C library in the build folder: nothing known about it.
        assert_eq!(libc_in_build(&build), None);
        let host_libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        std::fs::create_dir_all(context.join("rootfs/lib/x86_64-linux-gnu")).unwrap();
        std::fs::copy(
            &host_libc,
            context.join("rootfs/lib/x86_64-linux-gnu/libc.so.6"),
        )
        .unwrap();
        let defined = panther_toolmount::glibc::defined(&host_libc)
            .unwrap()
            .unwrap();
        assert_eq!(
            libc_in_build(&build),
            Some(ImageLibc {
                version: defined.to_string(),
                files: vec!["libc.so.6".into()],
                libraries: BTreeMap::new(),
            })
        );
        // A versioned library next to it, copied on its own: its versions are listed.
        let host_libstdcxx = std::fs::canonicalize("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")
            .expect("libstdc++ on this machine");
        std::fs::copy(&host_libstdcxx, context.join("libstdc++.so.6")).unwrap();
        let text = std::fs::read_to_string(context.join("Dockerfile")).unwrap()
            + "COPY libstdc++.so.6 /lib/x86_64-linux-gnu/\n";
        std::fs::write(context.join("Dockerfile"), text).unwrap();
        let libc = libc_in_build(&build).unwrap();
        let versions = &libc.libraries["libstdc++.so.6"];
        assert!(versions.iter().any(|v| v == "GLIBCXX_3.4"), "{versions:?}");
        assert_eq!(libc.libraries.len(), 1, "{:?}", libc.libraries.keys());
    }
}
