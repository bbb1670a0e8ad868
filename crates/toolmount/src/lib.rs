//! Brings a host tool (strace, valgrind, …) into a container whose image does not have it.
//!
//! The tool is not copied into the image: its executable and every shared library its
//! dynamic loader resolves for it (the *closure*, as `ld.so --list` prints it) are mounted
//! read-only, each file on its own, into one folder of the container, `/.panther/tools/<name>`.
//! The tool is then started through the mounted loader with that folder as its only library
//! path:
//!
//! ```text
//! /.panther/tools/strace/ld-linux-x86-64.so.2 --library-path /.panther/tools/strace \
//!     /.panther/tools/strace/strace -f -o … -- /usr/local/bin/echo-server …
//! ```
//!
//! so the tool runs with the host's libraries while the service it starts (`execve`) runs
//! with the image's own loader and libraries, exactly as it would without the tool. Nothing
//! is prepared on disk and nothing is cached: the mounts point at the host's files, so a
//! tool upgraded on the host is what the next run uses. docs/architecture.md compares this
//! with attaching from the host and with a tool layer built on the image.
//!
//! [`linkage`] tells statically from dynamically linked programs (a wrapper that preloads a
//! library needs the latter), from the ELF file alone.

pub mod glibc;
pub mod preload;
pub mod refuse;
pub mod symbol_versions;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};
use object::{
    elf,
    read::elf::{ElfFile64, ProgramHeader as _},
    Endianness,
};
use panther_plugin_api::{HostMount, Linkage};

/// The folder of a container under which carried tools are mounted, one folder per tool.
pub const TOOL_ROOT: &str = "/.panther/tools";

/// How a program is linked, read from its ELF program headers: `PT_INTERP` names a dynamic
/// loader. A file that is not a 64-bit ELF file (a script) reads as [`Linkage::Unknown`].
pub fn linkage(file: &Path) -> anyhow::Result<Linkage> {
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(match interpreter_of(&data) {
        Some(Some(_)) => Linkage::Dynamic,
        Some(None) => Linkage::Static,
        None => Linkage::Unknown,
    })
}

/// `None` when `data` is no 64-bit ELF file; else its `PT_INTERP`, if any.
fn interpreter_of(data: &[u8]) -> Option<Option<PathBuf>> {
    let file = ElfFile64::<Endianness>::parse(data).ok()?;
    let endian = file.endian();
    for header in file.elf_program_headers() {
        if header.p_type(endian) == elf::PT_INTERP {
            let bytes = header.data(endian, data).ok()?;
            let path = bytes.split(|&b| b == 0).next().unwrap_or_default();
            let path = String::from_utf8_lossy(path).into_owned();
            return Some(Some(PathBuf::from(path)));
        }
    }
    Some(None)
}

/// A host program and the files it needs to run anywhere: its dynamic loader and the shared
/// libraries that loader resolves for it on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    /// The program.
    pub program: PathBuf,
    /// Its dynamic loader; `None` for a statically linked program.
    pub interpreter: Option<PathBuf>,
    /// The shared libraries, as the loader resolved them, loader excluded.
    pub libraries: Vec<PathBuf>,
}

/// The closure of `program`, asking its own dynamic loader (`ld.so --list`, what `ldd`
/// does), so that `RUNPATH`, `ld.so.cache` and hardware capabilities count as they do when
/// the tool runs on this machine.
pub fn closure(program: &Path) -> anyhow::Result<Closure> {
    let data = std::fs::read(program).with_context(|| format!("reading {}", program.display()))?;
    let Some(interpreter) = interpreter_of(&data) else {
        bail!(
            "{} is not a 64-bit ELF program, so it cannot be carried into a container",
            program.display()
        );
    };
    let Some(interpreter) = interpreter else {
        return Ok(Closure {
            program: program.to_path_buf(),
            interpreter: None,
            libraries: Vec::new(),
        });
    };
    let libraries = listed_dependencies(&interpreter, program)?
        .into_iter()
        .filter(|path| *path != interpreter)
        .collect();
    Ok(Closure {
        program: program.to_path_buf(),
        interpreter: Some(interpreter),
        libraries,
    })
}

/// The files `file` needs, as the dynamic loader `loader` resolves them on this machine
/// (`ld.so --list`), in its order; a library it cannot find is an error naming it.
pub(crate) fn listed_dependencies(loader: &Path, file: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new(loader)
        .arg("--list")
        .arg(file)
        .output()
        .with_context(|| format!("running `{} --list`", loader.display()))?;
    if !output.status.success() {
        bail!(
            "`{} --list {}` failed ({}): {}",
            loader.display(),
            file.display(),
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
                file.display(),
                line.trim()
            );
        }
        found.extend(listed_path(line));
    }
    Ok(found)
}

/// The file a line of `ld.so --list` names: `name => /path (0x…)` or `/path (0x…)`; none
/// for the vDSO, which has no file.
fn listed_path(line: &str) -> Option<PathBuf> {
    let line = line.trim();
    let path = match line.split_once("=> ") {
        Some((_, rest)) => rest,
        None => line,
    };
    let path = path.split(" (0x").next()?.trim();
    path.starts_with('/').then(|| PathBuf::from(path))
}

/// A host tool made available inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    /// What starts the tool inside the container, in place of its host path: the mounted
    /// loader, its options and the mounted tool, or the mounted tool alone when it is static.
    pub argv: Vec<String>,
    /// The read-only mounts that put the tool and its closure there.
    pub mounts: Vec<HostMount>,
    /// The folder of the container that holds them.
    pub folder: PathBuf,
}

impl Carried {
    /// Where a file of the closure appears inside the container.
    pub fn inside(&self, host_file: &Path) -> PathBuf {
        self.folder
            .join(host_file.file_name().unwrap_or(host_file.as_os_str()))
    }
}

/// Carries `program` (a host path) into containers under `/.panther/tools/<name>`.
pub fn carry(name: &str, program: &Path) -> anyhow::Result<Carried> {
    let program = std::fs::canonicalize(program)
        .with_context(|| format!("resolving {}", program.display()))?;
    let closure = closure(&program)?;
    carry_closure(name, &closure)
}

/// [`carry`] for a closure already resolved.
pub fn carry_closure(name: &str, closure: &Closure) -> anyhow::Result<Carried> {
    let folder = Path::new(TOOL_ROOT).join(name);
    let mut by_name: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let files = std::iter::once(&closure.program)
        .chain(closure.interpreter.iter())
        .chain(closure.libraries.iter());
    for file in files {
        let file_name = file
            .file_name()
            .with_context(|| format!("{} has no file name", file.display()))?;
        let target = folder.join(file_name);
        // Mounts follow the host's symbolic links, and the target keeps the name the loader
        // looks for (libc.so.6, not the versioned file it points at).
        let source =
            std::fs::canonicalize(file).with_context(|| format!("resolving {}", file.display()))?;
        if let Some(other) = by_name.insert(target.clone(), source.clone()) {
            if other != source {
                bail!(
                    "cannot carry {}: {} and {} would both be {}",
                    closure.program.display(),
                    other.display(),
                    source.display(),
                    target.display()
                );
            }
        }
    }
    let mounts = by_name
        .into_iter()
        .map(|(target, source)| HostMount::read_only(source, target))
        .collect();
    let tool = folder.join(closure.program.file_name().unwrap_or_default());
    let argv = match &closure.interpreter {
        Some(interpreter) => vec![
            folder
                .join(interpreter.file_name().unwrap_or_default())
                .display()
                .to_string(),
            "--library-path".to_string(),
            folder.display().to_string(),
            tool.display().to_string(),
        ],
        None => vec![tool.display().to_string()],
    };
    Ok(Carried {
        argv,
        mounts,
        folder,
    })
}

/// The program an argv really starts: the tool a carried argv runs through the mounted
/// loader, else `argv[0]`.
pub fn program_of(argv: &[String]) -> Option<&str> {
    let first = argv.first()?;
    let carried = Path::new(first).starts_with(TOOL_ROOT)
        && argv.get(1).is_some_and(|a| a == "--library-path");
    if carried {
        return argv.get(3).map(String::as_str);
    }
    Some(first)
}

/// Adds `mounts` to `into`, each target once: an identical mount is kept once (two stacked
/// instances of one tool), a target mounted from two sources is an error.
pub fn merge_mounts(into: &mut Vec<HostMount>, mounts: &[HostMount]) -> anyhow::Result<()> {
    for mount in mounts {
        match into.iter().find(|m| m.target == mount.target) {
            Some(existing) if existing == mount => {}
            Some(existing) => bail!(
                "{} would be mounted twice, from {} and from {}",
                mount.target.display(),
                existing.source.display(),
                mount.source.display()
            ),
            None => into.push(mount.clone()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_lines_are_read() {
        assert_eq!(listed_path("\tlinux-vdso.so.1 (0x00007f445a865000)"), None);
        assert_eq!(
            listed_path("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f445a41e000)"),
            Some(PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"))
        );
        assert_eq!(
            listed_path("\t/lib64/ld-linux-x86-64.so.2 (0x00007f445a867000)"),
            Some(PathBuf::from("/lib64/ld-linux-x86-64.so.2"))
        );
    }

    #[test]
    fn a_dynamic_tool_is_started_through_the_mounted_loader() {
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let carried = carry("sh", &sh).unwrap();
        assert_eq!(carried.argv.len(), 4, "{:?}", carried.argv);
        assert!(
            carried.argv[0].starts_with("/.panther/tools/sh/ld-"),
            "{:?}",
            carried.argv
        );
        assert_eq!(carried.argv[1], "--library-path");
        assert_eq!(carried.argv[2], "/.panther/tools/sh");
        assert_eq!(program_of(&carried.argv), Some(carried.argv[3].as_str()));
        assert!(carried
            .mounts
            .iter()
            .all(|m| m.read_only && m.source.is_file()));
        assert!(carried
            .mounts
            .iter()
            .any(|m| m.target == Path::new("/.panther/tools/sh/libc.so.6")));
        assert_eq!(linkage(&sh).unwrap(), Linkage::Dynamic);
    }

    #[test]
    fn a_static_closure_is_the_program_alone() {
        let closure = Closure {
            program: PathBuf::from("/bin/sh"),
            interpreter: None,
            libraries: Vec::new(),
        };
        let carried = carry_closure("busybox", &closure).unwrap();
        assert_eq!(carried.argv, ["/.panther/tools/busybox/sh"]);
        assert_eq!(carried.mounts.len(), 1);
        assert_eq!(program_of(&["/usr/bin/x".to_string()]), Some("/usr/bin/x"));
    }

    #[test]
    fn non_elf_files_have_unknown_linkage() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(linkage(&script).unwrap(), Linkage::Unknown);
        assert!(carry("run", &script).is_err());
    }

    #[test]
    fn mounts_merge_by_target() {
        let a = HostMount::read_only("/usr/bin/strace", "/.panther/tools/strace/strace");
        let mut all = vec![a.clone()];
        merge_mounts(&mut all, &[a.clone(), HostMount::same_path("/results")]).unwrap();
        assert_eq!(all.len(), 2);
        let clash = HostMount::read_only("/opt/strace", "/.panther/tools/strace/strace");
        let err = merge_mounts(&mut all, &[clash]).unwrap_err().to_string();
        assert!(err.contains("mounted twice"), "{err}");
    }
}
