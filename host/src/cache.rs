//! The manifest cache: what probes learned about each plugin file, so that a warm `list`
//! opens no library and starts no probe.
//!
//! One JSON file, `plugins.json`, in `$PANTHER_CACHE_DIR` or the user's cache folder
//! (`$XDG_CACHE_HOME/panther-host`). Its [`Header`] names the host version, the
//! plugin-api version, the abi_stable version and the probe binary (size and mtime): a file
//! written by any other combination is ignored as a whole. Each entry is keyed by the
//! file's path (as found in its plugin folder) and holds its [`FileKey`] (size, mtime,
//! ctime, inode, device): a file that changed in any of these is probed again. Failures are cached too, so a file
//! that hangs the probe costs the time limit once, not on every command; outcomes that
//! depend on permissions are never stored (see
//! [`LoadErrorKind::depends_on_permissions`](crate::loader::LoadErrorKind::depends_on_permissions)),
//! and failures that may depend on the process's surroundings (a library the dynamic loader
//! did not find, a probe that ran out of time) hold only in the [`environment`] they were
//! seen in.
//!
//! Writing takes a lock file, merges with what is on disk, writes a temporary file in the
//! same folder and renames it over the cache: readers never see half a file and two hosts
//! filling the cache at once both keep their entries. A file that cannot be read as a
//! cache is ignored and replaced.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::probe::Answer;

/// Overrides the cache folder.
pub const CACHE_DIR_ENV: &str = "PANTHER_CACHE_DIR";
const FILE_NAME: &str = "plugins.json";
const LOCK_NAME: &str = "plugins.lock";

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileKey {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time (any write, chmod or rename), in nanoseconds since the epoch:
    /// unlike the mtime, it cannot be set back by a program.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
    /// Device number.
    pub dev: u64,
}

impl FileKey {
    /// The key of the file `path` points at (symlinks followed).
    pub fn of(path: &Path) -> std::io::Result<FileKey> {
        Ok(FileKey::from_metadata(&std::fs::metadata(path)?))
    }

    /// The key written on a command line (`size:mtime:ctime:inode:dev`), as the plugin
    /// server is told which file it may open.
    pub fn to_arg(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.size, self.mtime_ns, self.ctime_ns, self.inode, self.dev
        )
    }

    /// Reads [`FileKey::to_arg`] back.
    pub fn from_arg(arg: &str) -> Option<FileKey> {
        let mut parts = arg.split(':');
        let mut next = || parts.next();
        let key = FileKey {
            size: next()?.parse().ok()?,
            mtime_ns: next()?.parse().ok()?,
            ctime_ns: next()?.parse().ok()?,
            inode: next()?.parse().ok()?,
            dev: next()?.parse().ok()?,
        };
        next().is_none().then_some(key)
    }

    /// The key of a file whose metadata was already read.
    pub fn from_metadata(meta: &std::fs::Metadata) -> FileKey {
        FileKey {
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            inode: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// What a cache file must have been written by to be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The host's version.
    pub host: String,
    /// The plugin-api version the host was built with.
    pub plugin_api: String,
    /// The abi_stable version the host was built with.
    pub abi_stable: String,
    /// The probe binary's size and mtime (ns): a rebuilt probe reads files anew.
    pub probe: Option<(u64, i64)>,
}

impl Header {
    /// The header this host writes, for the probe binary `probe`.
    pub fn current(probe: Option<&Path>) -> Header {
        Header {
            host: env!("CARGO_PKG_VERSION").to_string(),
            plugin_api: panther_plugin_api::API_VERSION.to_string(),
            abi_stable: crate::loader::abi_stable_version(),
            probe: probe
                .and_then(|p| FileKey::of(p).ok())
                .map(|k| (k.size, k.mtime_ns)),
        }
    }
}

/// One file's cached outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The file as it was probed.
    pub key: FileKey,
    /// What the probe answered.
    pub answer: Answer,
    /// For a failure that may depend on the process's surroundings rather than the file
    /// (see
    /// [`LoadErrorKind::depends_on_environment`](crate::loader::LoadErrorKind::depends_on_environment)), the [`environment`] it was seen in:
    /// in another one the file is probed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// For a manifest, the layout fingerprint the probe checked the library against
    /// ([`panther_plugin_api::abi::LAYOUT_FINGERPRINT`] of the probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<u64>,
}

impl Entry {
    /// Whether this answer still holds in `environment`.
    fn holds_in(&self, environment: &str) -> bool {
        match &self.answer {
            Answer::Error { kind, .. } if kind.depends_on_environment() => {
                self.environment.as_deref() == Some(environment)
            }
            _ => true,
        }
    }
}

/// What a probe's failure to open a file may depend on besides the file: the variables the
/// dynamic loader reads, the loader's cache of installed libraries (`ldconfig` rewrites it
/// when a library is installed) and the probe's time limit. A failure cached under one
/// environment is not trusted under another: installing a missing library, setting
/// `LD_LIBRARY_PATH` or raising `PANTHER_PROBE_TIMEOUT` makes the next command try again.
pub fn environment(probe_timeout: std::time::Duration) -> String {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let ld_cache = FileKey::of(Path::new("/etc/ld.so.cache"))
        .map(|k| format!("{}:{}", k.size, k.mtime_ns))
        .unwrap_or_default();
    format!(
        "LD_LIBRARY_PATH={};LD_PRELOAD={};ld.so.cache={ld_cache};timeout_ms={}",
        var("LD_LIBRARY_PATH"),
        var("LD_PRELOAD"),
        probe_timeout.as_millis()
    )
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    header: Header,
    entries: BTreeMap<PathBuf, Entry>,
}

/// The cache as read at start, plus what this process learned.
#[derive(Debug)]
pub struct Cache {
    dir: Option<PathBuf>,
    header: Header,
    /// The [`environment`] of this process.
    environment: String,
    entries: BTreeMap<PathBuf, Entry>,
    learned: BTreeMap<PathBuf, Entry>,
}

/// The cache folder: `$PANTHER_CACHE_DIR`, else the user's cache folder.
pub fn default_dir() -> Option<PathBuf> {
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => directories::ProjectDirs::from("", "", "panther-host")
            .map(|d| d.cache_dir().to_path_buf()),
    }
}

impl Cache {
    /// Reads the cache in `dir` (no caching when `None`); a missing, unreadable or foreign
    /// file is an empty cache. `environment` is this process's [`environment`].
    pub fn open(dir: Option<PathBuf>, header: Header, environment: String) -> Cache {
        let entries = dir
            .as_deref()
            .and_then(|d| read(&d.join(FILE_NAME), &header))
            .unwrap_or_default();
        Cache {
            dir,
            header,
            environment,
            entries,
            learned: BTreeMap::new(),
        }
    }

    /// The cached answer for the file at `path` when it still has `key`.
    pub fn get(&self, path: &Path, key: &FileKey) -> Option<&Answer> {
        self.learned
            .get(path)
            .or_else(|| self.entries.get(path))
            .filter(|e| e.key == *key && e.holds_in(&self.environment))
            .map(|e| &e.answer)
    }

    /// Like [`Cache::get`], handing the answer over instead of lending it: each file is
    /// looked up once, and a manifest is not copied.
    pub fn take(&mut self, path: &Path, key: &FileKey) -> Option<(Answer, Option<u64>)> {
        let fits = |e: &Entry| e.key == *key && e.holds_in(&self.environment);
        if let Some(entry) = self.learned.get(path).filter(|e| fits(e)) {
            return Some((entry.answer.clone(), entry.layout));
        }
        match self.entries.remove(path) {
            Some(entry) if fits(&entry) => Some((entry.answer, entry.layout)),
            _ => None,
        }
    }

    /// Records what a probe answered about the file at `path`.
    pub fn put(&mut self, path: PathBuf, key: FileKey, answer: Answer, layout: Option<u64>) {
        let environment =
            matches!(&answer, Answer::Error { kind, .. } if kind.depends_on_environment())
                .then(|| self.environment.clone());
        self.learned.insert(
            path,
            Entry {
                key,
                answer,
                environment,
                layout,
            },
        );
    }

    /// Writes what was learned, merged with what is on disk now (see the module docs).
    /// Nothing is written when nothing was learned.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        if self.learned.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_NAME))?;
        let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| std::io::Error::from(errno))?;
        let target = dir.join(FILE_NAME);
        let mut entries = read(&target, &self.header).unwrap_or_default();
        // Files that are gone are forgotten.
        entries.retain(|path, _| path.exists());
        entries.extend(self.learned.clone());
        let file = CacheFile {
            header: self.header.clone(),
            entries,
        };
        let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut out = std::io::BufWriter::new(File::create(&temp)?);
            serde_json::to_writer(&mut out, &file)?;
            out.flush()?;
            std::fs::rename(&temp, &target)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

/// The entries of the cache file at `path` when it was written for `header`.
fn read(path: &Path, header: &Header) -> Option<BTreeMap<PathBuf, Entry>> {
    let bytes = std::fs::read(path).ok()?;
    let file: CacheFile = serde_json::from_slice(&bytes).ok()?;
    (file.header == *header).then_some(file.entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::LoadErrorKind;

    fn header(host: &str) -> Header {
        Header {
            host: host.into(),
            plugin_api: "1.2.0".into(),
            abi_stable: "0.11".into(),
            probe: Some((1, 2)),
        }
    }

    fn answer() -> Answer {
        Answer::Error {
            plugin: None,
            kind: LoadErrorKind::NotElf,
        }
    }

    #[test]
    fn entries_survive_a_round_trip_only_under_the_same_header_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.so");
        std::fs::write(&file, "x").unwrap();
        let key = FileKey::of(&file).unwrap();
        let mut cache = Cache::open(Some(dir.path().into()), header("1"), "env".into());
        cache.put(file.clone(), key, answer(), None);
        cache.save().unwrap();

        let again = Cache::open(Some(dir.path().into()), header("1"), "env".into());
        assert!(again.get(&file, &key).is_some());
        let other_key = FileKey { size: 2, ..key };
        assert!(again.get(&file, &other_key).is_none(), "a changed file");
        let other_host = Cache::open(Some(dir.path().into()), header("2"), "env".into());
        assert!(
            other_host.get(&file, &key).is_none(),
            "another host version"
        );

        std::fs::write(dir.path().join(FILE_NAME), "{ corrupt").unwrap();
        let corrupt = Cache::open(Some(dir.path().into()), header("1"), "env".into());
        assert!(corrupt.get(&file, &key).is_none());
    }

    #[test]
    fn failures_that_depend_on_the_environment_hold_only_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.so");
        std::fs::write(&file, "x").unwrap();
        let key = FileKey::of(&file).unwrap();
        let missing_library = Answer::Error {
            plugin: None,
            kind: LoadErrorKind::Open("libfoo.so: cannot open shared object file".into()),
        };
        let mut cache = Cache::open(Some(dir.path().into()), header("1"), "a".into());
        cache.put(file.clone(), key, missing_library, None);
        cache.save().unwrap();

        let same = Cache::open(Some(dir.path().into()), header("1"), "a".into());
        assert!(same.get(&file, &key).is_some());
        let mut other = Cache::open(Some(dir.path().into()), header("1"), "b".into());
        assert!(other.get(&file, &key).is_none(), "probed again elsewhere");
        assert!(other.take(&file, &key).is_none());

        // What the file's bytes decide holds everywhere.
        let mut cache = Cache::open(Some(dir.path().into()), header("1"), "a".into());
        cache.put(file.clone(), key, answer(), None);
        cache.save().unwrap();
        let other = Cache::open(Some(dir.path().into()), header("1"), "b".into());
        assert!(other.get(&file, &key).is_some());
    }
}
