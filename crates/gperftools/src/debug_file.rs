//! Separate debug files: where a distribution keeps the symbols and DWARF it stripped from a
//! library (`libc6-dbg`, `*-dbgsym`), found as gdb and pprof find them, by the object's build
//! id: `/usr/lib/debug/.build-id/ab/cdef….debug`.
//!
//! The C library and most system libraries ship stripped: their dynamic symbol table names
//! only exported functions, so a sample in an internal one (`msort_with_tmp`,
//! `_int_malloc`) would stay an address. Their debug file has the full symbol table and the
//! DWARF lines.
//!
//! A build id names one build of one file, so the file found for it is the right one wherever
//! it is read from: a service in a container is looked up in the container's root first,
//! then on this machine (a carried library is this machine's file, and so is its debug file).
//! (`.gnu_debuglink`, the older scheme, names a file by name and checksum; distributions
//! that install it also install the build-id links, so it is not searched.)

use std::path::{Path, PathBuf};

use object::Object;

use crate::container::ObjectFiles;

/// The folder debug files are installed under.
pub const DEBUG_ROOT: &str = "/usr/lib/debug";

/// The path of the debug file for `build_id`, under `DEBUG_ROOT/.build-id`.
pub fn build_id_path(build_id: &[u8]) -> Option<PathBuf> {
    let (first, rest) = build_id.split_first()?;
    if rest.is_empty() {
        return None;
    }
    let rest: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    Some(Path::new(DEBUG_ROOT).join(format!(".build-id/{first:02x}/{rest}.debug")))
}

/// The separate debug file of `file` (an object without DWARF of its own), read where
/// `files` reads the objects, then on this machine; `None` when none is installed.
pub fn find(file: &object::File<'_>, files: &ObjectFiles) -> Option<PathBuf> {
    let build_id = file.build_id().ok().flatten()?;
    let path = build_id_path(build_id)?;
    let inside = files.readable(&path.to_string_lossy());
    [inside, path]
        .into_iter()
        .find(|candidate| candidate.is_file())
}

/// Whether `file` carries DWARF of its own.
pub fn has_dwarf(file: &object::File<'_>) -> bool {
    file.section_by_name(".debug_info").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_id_names_its_file_under_the_debug_root() {
        assert_eq!(
            build_id_path(&[0x93, 0xac, 0x61, 0x0e]).unwrap(),
            Path::new("/usr/lib/debug/.build-id/93/ac610e.debug")
        );
        assert_eq!(build_id_path(&[0x93]), None);
        assert_eq!(build_id_path(&[]), None);
    }
}
