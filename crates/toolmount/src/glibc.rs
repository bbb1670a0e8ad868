//! Which versions of the GNU C library a file needs, and which a C library provides.
//!
//! A library preloaded into a program in a container (gperftools' `libprofiler`) runs on the
//! image's C library, not the host's: the program keeps its own, and one process has one.
//! Its symbol versions (`GLIBC_2.34`, in the ELF `.gnu.version_r` section) must therefore be
//! among those the image's `libc.so.6` defines (`.gnu.version_d`), or the image's dynamic
//! loader refuses to start the program (`version 'GLIBC_2.34' not found`). Both sides are
//! read here from the files alone, so that `check` can tell when the image's C library is
//! known (built from a local folder) and the run can tell from the container's files.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use crate::symbol_versions;

/// A version of the GNU C library, as a symbol version names it (`GLIBC_2.2.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlibcVersion(pub [u32; 3]);

impl GlibcVersion {
    /// Reads `GLIBC_2.34` or `GLIBC_2.2.5`; none for other names (`GLIBC_PRIVATE`,
    /// `GLIBC_ABI_DT_RELR`) and for other libraries' versions.
    pub fn parse(name: &str) -> Option<Self> {
        let numbers = name.strip_prefix("GLIBC_")?;
        let mut parts = [0u32; 3];
        let mut count = 0;
        for part in numbers.split('.') {
            let slot = parts.get_mut(count)?;
            *slot = part.parse().ok()?;
            count += 1;
        }
        (count >= 2).then_some(GlibcVersion(parts))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [major, minor, patch] = self.0;
        if patch == 0 {
            write!(f, "GLIBC_{major}.{minor}")
        } else {
            write!(f, "GLIBC_{major}.{minor}.{patch}")
        }
    }
}

/// Whether a shared library (by its file name) is a part of the C library itself, which a
/// program brings along with its own `libc.so.6` and which must never be carried into a
/// container: one process has one C library, the image's.
pub fn is_part_of_glibc(file_name: &str) -> bool {
    const PARTS: &[&str] = &[
        "libc",
        "libm",
        "libmvec",
        "libpthread",
        "libdl",
        "librt",
        "libresolv",
        "libutil",
        "libanl",
        "libnsl",
        "libBrokenLocale",
        "libc_malloc_debug",
        "libthread_db",
    ];
    if file_name.starts_with("ld-linux") || file_name.starts_with("ld64.so") {
        return true;
    }
    if file_name.starts_with("libnss_") {
        return true;
    }
    let stem = file_name.split(".so").next().unwrap_or(file_name);
    file_name.contains(".so") && PARTS.contains(&stem)
}

/// What a file needs from the C library: its highest version, and which of its files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// The highest `GLIBC_` version it refers to; none when it refers to none.
    pub highest: Option<GlibcVersion>,
    /// The C library's files it refers to versions of (`libc.so.6`, `libm.so.6`).
    pub files: Vec<String>,
}

/// What `file` needs from the C library's own files, read from its version references.
pub fn needed(file: &Path) -> anyhow::Result<Needs> {
    let mut found = Needs::default();
    for (library, versions) in symbol_versions::references(file)? {
        if !is_part_of_glibc(&library) {
            continue;
        }
        let highest = versions.iter().filter_map(|v| GlibcVersion::parse(v)).max();
        found.highest = found.highest.max(highest);
        found.files.push(library);
    }
    Ok(found)
}

/// The C library's files a program brings with its own `libc.so.6`, by the names a
/// library asks for them; [`libc_under`] and the build folder reading list those present.
pub const FILES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libmvec.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libresolv.so.2",
    "libutil.so.1",
    "libanl.so.1",
];

/// The highest version a C library (`libc.so.6`) defines; none for a file that defines no
/// `GLIBC_` version (another C library, such as musl).
pub fn defined(libc: &Path) -> anyhow::Result<Option<GlibcVersion>> {
    Ok(symbol_versions::defined(libc)?
        .iter()
        .filter_map(|v| GlibcVersion::parse(v))
        .max())
}

/// Where a Linux image keeps its `libc.so.6`, as its dynamic loader looks for it (Debian's
/// multiarch folders first, then the folders of other distributions).
pub fn libc_candidates() -> Vec<PathBuf> {
    let arch = std::env::consts::ARCH;
    let mut paths = Vec::new();
    for dir in [
        format!("/lib/{arch}-linux-gnu"),
        format!("/usr/lib/{arch}-linux-gnu"),
        "/lib64".to_string(),
        "/usr/lib64".to_string(),
        "/lib".to_string(),
        "/usr/lib".to_string(),
    ] {
        paths.push(Path::new(&dir).join("libc.so.6"));
    }
    paths
}

/// The C library of a file tree, as found under `root` (a container's root seen from the
/// host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLibc {
    /// Its `libc.so.6`, as a path of the tree.
    pub path: PathBuf,
    /// The highest version it defines.
    pub version: Option<GlibcVersion>,
    /// Its [`FILES`] present next to it.
    pub files: Vec<String>,
}

/// The C library of the file tree under `root`.
pub fn libc_under(root: &Path) -> Option<FoundLibc> {
    libc_candidates().into_iter().find_map(|inside| {
        let file = root.join(inside.strip_prefix("/").unwrap_or(&inside));
        let folder = file.parent()?.to_path_buf();
        file.is_file().then(|| FoundLibc {
            version: defined(&file).ok().flatten(),
            files: FILES
                .iter()
                .filter(|name| folder.join(name).exists())
                .map(|name| name.to_string())
                .collect(),
            path: inside,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_and_ordered_as_numbers() {
        let v = |s| GlibcVersion::parse(s).unwrap();
        assert!(v("GLIBC_2.2.5") < v("GLIBC_2.3"));
        assert!(v("GLIBC_2.9") < v("GLIBC_2.34"));
        assert_eq!(v("GLIBC_2.2.5").to_string(), "GLIBC_2.2.5");
        assert_eq!(v("GLIBC_2.34").to_string(), "GLIBC_2.34");
        assert_eq!(GlibcVersion::parse("GLIBC_PRIVATE"), None);
        assert_eq!(GlibcVersion::parse("GLIBCXX_3.4"), None);
        assert_eq!(GlibcVersion::parse("GLIBC_ABI_DT_RELR"), None);
    }

    #[test]
    fn the_c_library_is_told_from_other_libraries() {
        for part in [
            "libc.so.6",
            "libm.so.6",
            "ld-linux-x86-64.so.2",
            "libpthread.so.0",
        ] {
            assert!(is_part_of_glibc(part), "{part}");
        }
        for other in [
            "libstdc++.so.6",
            "libgcc_s.so.1",
            "libunwind.so.8",
            "liblzma.so.5",
        ] {
            assert!(!is_part_of_glibc(other), "{other}");
        }
    }

    #[test]
    fn this_machines_c_library_covers_what_its_programs_need() {
        let found = libc_under(Path::new("/")).expect("a libc.so.6 here");
        let defined = found.version.expect("glibc defines versions");
        assert!(defined >= GlibcVersion([2, 17, 0]), "{found:?}");
        assert!(found.files.iter().any(|f| f == "libm.so.6"), "{found:?}");
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let needs = needed(&sh).unwrap();
        let needed = needs.highest.expect("sh needs versioned symbols");
        assert!(needed <= defined, "{needed} > {defined}");
        assert!(needs.files.iter().any(|f| f == "libc.so.6"), "{needs:?}");
    }
}
