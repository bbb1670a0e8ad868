//! Trust in plugin files, as ssh's `StrictModes` has it for `authorized_keys`.
//!
//! Opening a plugin runs its code in the host with the host's rights (see
//! docs/architecture.md), so whoever can change a plugin file, or put one in a plugin
//! folder, can act as the user running the host. A folder or file that group or others may
//! write, or that belongs to someone else than the user running the host or root, is
//! refused with the reason and the command that fixes it. Folders named in the settings'
//! `trust_plugin_dirs` are accepted as they are, with the files in them.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// The folders the user trusts whatever their owner and mode.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    trusted: Vec<PathBuf>,
}

impl Trust {
    /// Trusts `dirs` (resolved, so a link to a trusted folder is trusted too).
    pub fn new(dirs: &[PathBuf]) -> Trust {
        Trust {
            trusted: dirs
                .iter()
                .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))
                .collect(),
        }
    }

    /// Whether `dir` was declared trusted.
    pub fn is_trusted(&self, dir: &Path) -> bool {
        if self.trusted.is_empty() {
            return false;
        }
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        self.trusted.contains(&dir)
    }

    /// Why the plugin folder `dir` is refused, if it is.
    pub fn check_folder(&self, dir: &Path) -> Result<(), String> {
        if self.is_trusted(dir) {
            return Ok(());
        }
        let meta = match std::fs::metadata(dir) {
            Ok(meta) => meta,
            // Reading the folder reports it.
            Err(_) => return Ok(()),
        };
        judge("the plugin folder", dir, &meta)
    }

    /// Why the plugin file `path` is refused, if it is; `folder_trusted` is
    /// [`Trust::is_trusted`] of its folder. Links are followed: what counts is the file that
    /// would be opened.
    pub fn check_file(
        folder_trusted: bool,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<(), String> {
        if folder_trusted {
            return Ok(());
        }
        judge("the file", path, meta)
    }
}

/// The verdict on one folder or file.
fn judge(what: &str, path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    static ME: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let me = *ME.get_or_init(|| nix::unistd::geteuid().as_raw());
    let owner = meta.uid();
    if owner != me && owner != 0 {
        let my_name = user_name(me);
        let allowed = if me == 0 {
            "root".to_string()
        } else {
            format!("{my_name} or root")
        };
        return Err(format!(
            "{what} {} belongs to {}, not to {allowed}; fix with `chown {my_name} {}`, \
             or trust the folder with `trust_plugin_dirs` in the settings file",
            path.display(),
            user_label(owner),
            shell_path(path)
        ));
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(format!(
            "{what} {} can be written by {who} (mode {:o}); fix with `chmod go-w {}`, \
             or trust the folder with `trust_plugin_dirs` in the settings file",
            path.display(),
            mode & 0o7777,
            shell_path(path)
        ));
    }
    Ok(())
}

/// `alice`, or the number when the user has no name.
fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// `alice (uid 1000)`, or `uid 1000`.
fn user_label(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// A path quoted for pasting into a shell when it needs it.
fn shell_path(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
