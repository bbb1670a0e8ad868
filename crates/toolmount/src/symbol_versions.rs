//! The symbol versions of shared libraries (`GLIBC_2.34` of `libc.so.6`, `GLIBCXX_3.4.30` of
//! `libstdc++.so.6`), read from the ELF files alone: those a library defines
//! (`.gnu.version_d`) and those a file refers to (`.gnu.version_r`). [`crate::glibc`] reads
//! the C library's through them.
//!
//! A library preloaded into a program in a container brings its own dependencies
//! ([`crate::preload`]). When the image holds a library of the same name (a C++ program's
//! `libstdc++.so.6`), one process can load only one of the two, for the program and for the
//! carried library alike: the one loaded must define every version both need.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::Context as _;
use object::{elf, read::elf::ElfFile64, Endianness};

/// Reads `file` as a 64-bit ELF file and hands it to `read`.
fn with_elf<T>(
    file: &Path,
    read: impl FnOnce(&ElfFile64<'_, Endianness>, &[u8]) -> object::Result<T>,
) -> anyhow::Result<T> {
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let elf = ElfFile64::<Endianness>::parse(data.as_slice())
        .with_context(|| format!("{} is not a 64-bit ELF file", file.display()))?;
    read(&elf, data.as_slice())
        .with_context(|| format!("reading the versions of {}", file.display()))
}

/// The versions `file` defines (its base version, its own name, left out).
pub fn defined(file: &Path) -> anyhow::Result<BTreeSet<String>> {
    with_elf(file, |elf, data| {
        let endian = elf.endian();
        let sections = elf.elf_section_table();
        let mut found = BTreeSet::new();
        let Some((mut definitions, link)) = sections.gnu_verdef(endian, data)? else {
            return Ok(found);
        };
        let strings = sections.strings(endian, data, link)?;
        while let Some((definition, mut names)) = definitions.next()? {
            if definition.vd_flags.get(endian).contains(elf::VER_FLG_BASE) {
                continue;
            }
            if let Some(name) = names.next()? {
                found.insert(String::from_utf8_lossy(name.name(endian, strings)?).into_owned());
            }
        }
        Ok(found)
    })
}

/// Every version `file` refers to, by the library it names for it (`libc.so.6` →
/// `GLIBC_2.34`, …; `libstdc++.so.6` → `GLIBCXX_3.4.30`, …).
pub fn references(file: &Path) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    with_elf(file, |elf, data| {
        let endian = elf.endian();
        let sections = elf.elf_section_table();
        let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let Some((mut needs, link)) = sections.gnu_verneed(endian, data)? else {
            return Ok(found);
        };
        let strings = sections.strings(endian, data, link)?;
        while let Some((need, mut versions)) = needs.next()? {
            let library = String::from_utf8_lossy(need.file(endian, strings)?).into_owned();
            let entry = found.entry(library).or_default();
            while let Some(version) = versions.next()? {
                entry.insert(String::from_utf8_lossy(version.name(endian, strings)?).into_owned());
            }
        }
        Ok(found)
    })
}

/// The versions `file` needs from the library it names `library` (`libstdc++.so.6`).
pub fn needed_from(file: &Path, library: &str) -> anyhow::Result<BTreeSet<String>> {
    Ok(references(file)?.remove(library).unwrap_or_default())
}

/// Of `files` (file name, file to read), the shared libraries outside the C library that
/// define versions, by file name, with the versions they define. Files that are no ELF
/// libraries are left out.
pub fn versioned_libraries<'a>(
    files: impl IntoIterator<Item = (String, &'a Path)>,
) -> BTreeMap<String, Vec<String>> {
    files
        .into_iter()
        .filter(|(name, _)| name.starts_with("lib") && name.contains(".so"))
        .filter(|(name, _)| !crate::glibc::is_part_of_glibc(name))
        .filter_map(|(name, file)| {
            let versions = defined(file).ok()?;
            (!versions.is_empty()).then(|| (name, versions.into_iter().collect()))
        })
        .collect()
}

/// [`versioned_libraries`] of the files in `folder`.
pub fn versioned_libraries_in(folder: &Path) -> BTreeMap<String, Vec<String>> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return BTreeMap::new();
    };
    let files: Vec<(String, std::path::PathBuf)> = entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    versioned_libraries(files.iter().map(|(n, p)| (n.clone(), p.as_path())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBSTDCXX: &str = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6";

    #[test]
    fn a_library_s_definitions_cover_what_its_users_need() {
        let libstdcxx = Path::new(LIBSTDCXX);
        assert!(libstdcxx.is_file(), "no {LIBSTDCXX} on this machine");
        let defined = defined(libstdcxx).unwrap();
        assert!(defined.contains("GLIBCXX_3.4"), "{defined:?}");
        assert!(defined.contains("CXXABI_1.3"), "{defined:?}");
        assert!(
            !defined.contains("libstdc++.so.6"),
            "the base version is left out"
        );
        let profiler = Path::new("/usr/lib/x86_64-linux-gnu/libprofiler.so.0");
        assert!(
            profiler.is_file(),
            "no libprofiler on this machine (libgoogle-perftools4)"
        );
        let needed = needed_from(profiler, "libstdc++.so.6").unwrap();
        assert!(!needed.is_empty(), "libprofiler is C++");
        assert!(needed.is_subset(&defined), "{needed:?}");
        assert!(needed_from(profiler, "libnothing.so.1").unwrap().is_empty());
        // The folder's versioned libraries, without the C library's own files.
        let folder = versioned_libraries_in(Path::new("/usr/lib/x86_64-linux-gnu"));
        assert!(folder.contains_key("libstdc++.so.6"), "{:?}", folder.keys());
        assert!(!folder.contains_key("libc.so.6"));
    }
}
