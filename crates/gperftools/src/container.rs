//! Reading a container's files from the host, for symbolizing the profiles of a service that
//! ran in one.
//!
//! A profile records the memory map of the process that wrote it, with the paths the
//! container saw (`/usr/local/bin/server`, `/lib/x86_64-linux-gnu/libc.so.6`). The host may
//! have no file at such a path, or another file (its own C library): symbolizing against it
//! would name the wrong functions. So the objects are read from the container's own root,
//! which the host reaches through `/proc/PID/root` of any process of the container.
//!
//! The profile is symbolized after the service has stopped, when the container may be gone.
//! So the root is opened (`O_PATH`) while the service runs, when monitoring starts: an open
//! root keeps the container's file system readable after its processes exit and after the
//! engine removes the container (the kernel keeps a mount alive while a descriptor refers to
//! it; measured with Docker 20.10 on overlayfs). The mounts made on top of that root, the
//! carried libraries among them, are gone once the container's processes are: their files
//! are read from where they came from on the host.
//!
//! Other ways were weighed (docs/architecture.md, "Tools in containers"): copying every
//! mapped object out before the container is removed copies what the profile may never
//! name and misses the libraries loaded after the copy, and reading the image's build folder
//! works only for images built from one and only for the files it copies.
//!
//! Opening `/proc/PID/root` needs the same standing towards the process as sending it
//! signals, which the profilers need anyway (they start and flush profiles with signals).

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

/// A container's root file system, held open.
#[derive(Debug)]
pub struct PinnedRoot {
    root: File,
}

impl PinnedRoot {
    /// Opens the root of the container process `pid` runs in.
    pub fn of(pid: u32) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(format!("/proc/{pid}/root"))?;
        Ok(PinnedRoot { root })
    }

    /// A path of this process through which the container's `/` is read.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.root.as_raw_fd()))
    }

    /// Where a path of the container is read from here.
    pub fn join(&self, inside: &Path) -> PathBuf {
        self.path().join(inside.strip_prefix("/").unwrap_or(inside))
    }
}

/// Where the symbolizer reads the objects a profile names: through a container's root,
/// except for the host files mounted into it.
#[derive(Debug, Default)]
pub struct ObjectFiles {
    /// The container's root, when the service ran in a container.
    pub root: Option<PinnedRoot>,
    /// Host files mounted into the container: (path inside, host file).
    pub mounted: Vec<(PathBuf, PathBuf)>,
}

impl ObjectFiles {
    /// The file to read for a path of the profile's memory map: the path itself for a
    /// service of this machine.
    pub fn readable(&self, mapped: &str) -> PathBuf {
        let inside = Path::new(mapped);
        if let Some((_, host)) = self.mounted.iter().find(|(target, _)| target == inside) {
            return host.clone();
        }
        match &self.root {
            Some(root) => root.join(inside),
            None => inside.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_root_reads_the_processes_files_and_mounts_read_the_hosts() {
        let root = PinnedRoot::of(std::process::id()).expect("own root");
        let files = ObjectFiles {
            root: Some(root),
            mounted: vec![("/.panther/tools/x/lib.so".into(), "/host/lib.so".into())],
        };
        let through = files.readable("/proc/self/exe");
        assert!(through.starts_with("/proc/self/fd/"), "{through:?}");
        assert!(std::fs::metadata(files.readable("/bin/sh")).is_ok());
        assert_eq!(
            files.readable("/.panther/tools/x/lib.so"),
            Path::new("/host/lib.so")
        );
        assert_eq!(
            ObjectFiles::default().readable("/usr/bin/x"),
            Path::new("/usr/bin/x")
        );
    }
}
