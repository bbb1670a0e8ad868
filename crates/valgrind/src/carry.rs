//! Valgrind for a service in a container: the carried launcher, its tool folder, and the
//! files its options name, mounted where the argv says.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use panther_plugin_api::{HostMount, ServiceCommand};
use panther_toolmount::{carry, merge_mounts, TOOL_ROOT};

/// Where valgrind's tool folder is mounted inside the container.
fn lib_inside() -> PathBuf {
    Path::new(TOOL_ROOT).join("valgrind-lib")
}

/// Where separate debug files live, by build id (`.build-id/xx/yyyy.debug`).
const DEBUG_DIR: &str = "/usr/lib/debug";

/// Where distributions install valgrind's tools (`VALGRIND_LIB`).
const LIB_DIRS: &[&str] = &[
    "/usr/libexec/valgrind",
    "/usr/lib/x86_64-linux-gnu/valgrind",
    "/usr/lib/aarch64-linux-gnu/valgrind",
    "/usr/lib/valgrind",
    "/usr/local/libexec/valgrind",
    "/usr/local/lib/valgrind",
];

/// The host's valgrind tool folder: `VALGRIND_LIB` when set, else the first folder that
/// holds a tool.
fn lib_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("VALGRIND_LIB") {
        return Ok(PathBuf::from(dir));
    }
    LIB_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| {
            std::fs::read_dir(dir).is_ok_and(|mut entries| {
                entries.any(|e| {
                    e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("memcheck-"))
                })
            })
        })
        .with_context(|| {
            format!(
                "valgrind's tool folder was not found (looked in {}; set VALGRIND_LIB)",
                LIB_DIRS.join(", ")
            )
        })
}

/// The launcher program: Debian's `valgrind` is a shell script that sets two variables and
/// starts `valgrind.bin`, and a container has no shell.
fn launcher(valgrind: &Path) -> PathBuf {
    let binary = valgrind.with_extension("bin");
    let is_script = std::fs::read(valgrind).is_ok_and(|data| data.starts_with(b"#!"));
    if is_script && binary.is_file() {
        binary
    } else {
        valgrind.to_path_buf()
    }
}

/// Turns `argv` (valgrind's host path first) into one that runs in the container of
/// `command`, adding the mounts and `VALGRIND_LIB` to it.
pub fn into_container(
    valgrind: &Path,
    mut argv: Vec<String>,
    command: &mut ServiceCommand,
) -> anyhow::Result<Vec<String>> {
    let doing = || {
        format!(
            "bringing {} into the container of service `{}`",
            valgrind.display(),
            command.service
        )
    };
    let launcher = launcher(valgrind);
    let carried = carry("valgrind", &launcher).with_context(doing)?;
    let lib = lib_dir().with_context(doing)?;
    let mut mounts = carried.mounts.clone();
    mounts.push(HostMount::read_only(lib, lib_inside()));
    mounts.push(HostMount::same_path(&command.output_dir));
    // Valgrind must redirect functions of the dynamic loader (`strlen`), whose symbols a
    // distribution strips and ships as debug files found by build id under /usr/lib/debug;
    // `--extra-debuginfo-path` does no build-id lookup. The host's are mounted where
    // valgrind looks: they serve a container whose loader is the host's build (an image made
    // from the host's libraries); another build needs its own debug files or an unstripped
    // loader in the image.
    let debug = Path::new(DEBUG_DIR);
    if debug.is_dir() {
        mounts.push(HostMount::read_only(debug, debug));
    }
    for arg in &argv {
        if let Some(file) = arg.strip_prefix("--suppressions=") {
            mounts.push(HostMount::read_only(file, file));
        }
    }
    merge_mounts(&mut command.mounts, &mounts)?;
    command
        .env
        .insert("VALGRIND_LIB".into(), lib_inside().display().to_string());
    if launcher != valgrind {
        // What Debian's wrapper script sets before it starts `valgrind.bin`: C++'s standard
        // library allocates with malloc, so memcheck sees every block.
        for key in ["GLIBCXX_FORCE_NEW", "GLIBCPP_FORCE_NEW"] {
            command.env.entry(key.into()).or_insert_with(|| "1".into());
        }
    }
    argv.splice(0..1, carried.argv);
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapper_script_gives_way_to_the_program_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("valgrind");
        std::fs::write(&script, "#!/bin/sh -e\nexec $0.bin \"$@\"\n").unwrap();
        // No program next to it: the script is all there is.
        assert_eq!(launcher(&script), script);
        std::fs::write(dir.path().join("valgrind.bin"), "\x7fELF").unwrap();
        assert_eq!(launcher(&script), dir.path().join("valgrind.bin"));
        // A program is carried as it is.
        let program = dir.path().join("other");
        std::fs::write(&program, "\x7fELF").unwrap();
        std::fs::write(dir.path().join("other.bin"), "\x7fELF").unwrap();
        assert_eq!(launcher(&program), program);
    }

    #[test]
    fn the_container_command_names_the_mounted_tool_folder() {
        let Ok(valgrind) = crate::locate(std::env::var_os("PATH").as_deref()) else {
            return;
        };
        let mut command = ServiceCommand {
            service: "server".into(),
            output_dir: PathBuf::from("/results/monitoring/server/memcheck"),
            ..ServiceCommand::default()
        };
        let argv = vec![valgrind.display().to_string(), "--".into(), "/srv".into()];
        let argv = into_container(&valgrind, argv, &mut command).unwrap();
        assert!(argv[0].starts_with("/.panther/tools/valgrind/"), "{argv:?}");
        assert_eq!(&argv[argv.len() - 2..], ["--", "/srv"]);
        assert_eq!(command.env["VALGRIND_LIB"], "/.panther/tools/valgrind-lib");
        assert!(command
            .mounts
            .iter()
            .any(|m| m.target == Path::new("/results/monitoring/server/memcheck") && !m.read_only));
        assert!(command
            .mounts
            .iter()
            .any(|m| m.target == lib_inside() && m.read_only));
    }
}
