//! Valgrind's command line: finding the program, building the argv, and refusing
//! configurations valgrind would misread.

use std::{
    ffi::OsStr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::bail;

/// A valgrind tool the plugins run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Memory errors and leaks.
    Memcheck,
    /// Data races, lock-order violations, pthread misuse.
    Helgrind,
}

impl Tool {
    /// The name valgrind knows it by (`--tool=`), also the name in its XML.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Memcheck => "memcheck",
            Tool::Helgrind => "helgrind",
        }
    }

    /// How many times slower a program typically runs under the tool; the host scales
    /// readiness and run timeouts by it.
    ///
    /// Memcheck: valgrind's Quick Start Guide says 20 to 30 times. Helgrind: valgrind gives no
    /// figure; measured with valgrind 3.19 on two threads, about 10 times for sorting (little
    /// synchronisation) and about 550 times for a loop taking a mutex six million times,
    /// against 11 and 23 times for memcheck. 50 sits between the two; raise the service's
    /// timeouts for lock-heavy programs. Network-bound programs such as the echo pair are
    /// dominated by valgrind's start-up (about 0.6 s) rather than by a factor.
    pub fn slowdown(self) -> f64 {
        match self {
            Tool::Memcheck => 20.0,
            Tool::Helgrind => 50.0,
        }
    }
}

/// Options the plugins always set themselves; `extra_args` may not repeat them.
const FIXED: [(&str, &str); 9] = [
    ("--tool", "the plugin chooses the tool"),
    ("--xml", "the plugins read valgrind's XML"),
    ("--xml-file", "the XML goes to the results folder"),
    ("--xml-fd", "the XML goes to the results folder"),
    ("--xml-socket", "the XML goes to the results folder"),
    ("--log-file", "the log goes to the results folder"),
    ("--log-fd", "the log goes to the results folder"),
    ("--log-socket", "the log goes to the results folder"),
    (
        "--child-silent-after-fork",
        "forked children must stay silent or they corrupt the parent's XML",
    ),
];

/// Options that have a configuration key in both plugins.
const COMMON_KEYS: [(&str, &str); 2] = [
    ("--suppressions", "suppressions"),
    ("--trace-children", "trace_children"),
];

/// Problems with `extra_args`: each element must be one valgrind option (valgrind reads an
/// element that does not start with `-` as the program to run), and may not set what the
/// plugin sets or what has its own key. `keyed` lists the tool's own keys as
/// `(option, key)`, e.g. `("--leak-check", "leak_check")`.
pub fn check_extra_args(extra: &[String], keyed: &[(&str, &str)]) -> Vec<String> {
    let sets = |arg: &str, option: &str| {
        arg == option
            || arg
                .strip_prefix(option)
                .is_some_and(|rest| rest.starts_with('='))
    };
    let mut problems = Vec::new();
    for arg in extra {
        if arg == "--" || !arg.starts_with('-') {
            problems.push(format!(
                "`extra_args` element {arg:?} is not a valgrind option: each element is one \
                 option starting with `-` (the service's command comes after them)"
            ));
        } else if arg
            .split('=')
            .next()
            .is_some_and(|name| name.contains(char::is_whitespace))
        {
            problems.push(format!(
                "`extra_args` element {arg:?} holds several options: give each option its \
                 own element"
            ));
        } else if let Some((option, why)) = FIXED.iter().find(|(o, _)| sets(arg, o)) {
            problems.push(format!(
                "`extra_args` element {arg:?} sets `{option}`, which the plugin sets itself: {why}"
            ));
        } else if let Some((option, key)) =
            COMMON_KEYS.iter().chain(keyed).find(|(o, _)| sets(arg, o))
        {
            problems.push(format!(
                "`extra_args` element {arg:?} sets `{option}`: use the `{key}` key instead"
            ));
        }
    }
    problems
}

/// Problems with suppression files that can be checked before the run: absolute paths
/// that are not files. Relative paths are resolved against the service's working directory
/// when the command is wrapped (see [`Options::argv`]).
pub fn check_suppressions(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter(|f| f.is_absolute() && !f.is_file())
        .map(|f| format!("suppressions file {} does not exist", f.display()))
        .collect()
}

/// The absolute path of `valgrind` on `path` (the value of `PATH`).
pub fn locate(path: Option<&OsStr>) -> anyhow::Result<PathBuf> {
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = path
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("valgrind"))
        .find(|p| executable(p));
    match found {
        Some(program) => Ok(program),
        None => bail!(
            "valgrind is not installed: no executable `valgrind` on PATH (Debian package: \
             valgrind; e.g. `apt-get install valgrind`)"
        ),
    }
}

/// How one instance runs valgrind, from its configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The tool's own options from its configuration keys, e.g. `--leak-check=full`.
    pub tool_args: Vec<String>,
    /// Suppression files; relative ones are relative to the service's working directory.
    pub suppressions: Vec<PathBuf>,
    /// Further options, each one argv element, passed through unchanged.
    pub extra_args: Vec<String>,
    /// Follow `exec` into child processes (`--trace-children=yes`), one XML file each.
    pub trace_children: bool,
}

impl Options {
    /// The wrapped argv: valgrind, its options, `--`, then the service's argv. Fails when a
    /// suppression file does not exist (valgrind would refuse to start).
    pub fn argv(
        &self,
        tool: Tool,
        program: &Path,
        output_dir: &Path,
        cwd: Option<&Path>,
        service_argv: &[String],
    ) -> anyhow::Result<Vec<String>> {
        if service_argv.is_empty() {
            bail!("the service has an empty command");
        }
        // Valgrind expands `%p` (pid), `%q{VAR}` and `%%` in file names; the folder may contain
        // a `%` of its own.
        let dir = output_dir.display().to_string().replace('%', "%%");
        let stem = if self.trace_children {
            "valgrind.%p"
        } else {
            "valgrind"
        };
        let mut argv = vec![
            program.display().to_string(),
            format!("--tool={}", tool.name()),
            "--xml=yes".to_string(),
            format!("--xml-file={dir}/{stem}.xml"),
            format!("--log-file={dir}/{stem}.log"),
            "--child-silent-after-fork=yes".to_string(),
            format!(
                "--trace-children={}",
                if self.trace_children { "yes" } else { "no" }
            ),
        ];
        argv.extend(self.tool_args.iter().cloned());
        for file in &self.suppressions {
            let resolved = match cwd {
                Some(cwd) if file.is_relative() => cwd.join(file),
                _ => file.clone(),
            };
            if !resolved.is_file() {
                let base = match cwd {
                    Some(cwd) if file.is_relative() => format!(
                        " (relative paths are resolved against the service's working directory, {})",
                        cwd.display()
                    ),
                    _ => String::new(),
                };
                bail!(
                    "suppressions file {} does not exist{base}",
                    resolved.display()
                );
            }
            argv.push(format!("--suppressions={}", resolved.display()));
        }
        argv.extend(self.extra_args.iter().cloned());
        argv.push("--".to_string());
        argv.extend(service_argv.iter().cloned());
        Ok(argv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn argv_prefixes_the_service_with_one_element_per_option() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.supp"), "").unwrap();
        let options = Options {
            tool_args: strings(&["--leak-check=full"]),
            suppressions: vec![PathBuf::from("app.supp")],
            extra_args: strings(&["--verbose", "--verbose"]),
            trace_children: false,
        };
        let argv = options
            .argv(
                Tool::Memcheck,
                Path::new("/usr/bin/valgrind"),
                Path::new("/r/monitoring/s/memcheck"),
                Some(dir.path()),
                &strings(&["./server", "--port", "1"]),
            )
            .unwrap();
        let supp = format!("--suppressions={}", dir.path().join("app.supp").display());
        assert_eq!(
            argv,
            [
                "/usr/bin/valgrind",
                "--tool=memcheck",
                "--xml=yes",
                "--xml-file=/r/monitoring/s/memcheck/valgrind.xml",
                "--log-file=/r/monitoring/s/memcheck/valgrind.log",
                "--child-silent-after-fork=yes",
                "--trace-children=no",
                "--leak-check=full",
                supp.as_str(),
                "--verbose",
                "--verbose",
                "--",
                "./server",
                "--port",
                "1",
            ]
        );
    }

    #[test]
    fn traced_children_get_a_file_each_and_percent_is_escaped() {
        let options = Options {
            trace_children: true,
            ..Options::default()
        };
        let argv = options
            .argv(
                Tool::Helgrind,
                Path::new("/usr/bin/valgrind"),
                Path::new("/r/100%/h"),
                None,
                &strings(&["prog"]),
            )
            .unwrap();
        assert_eq!(
            &argv[1..7],
            [
                "--tool=helgrind",
                "--xml=yes",
                "--xml-file=/r/100%%/h/valgrind.%p.xml",
                "--log-file=/r/100%%/h/valgrind.%p.log",
                "--child-silent-after-fork=yes",
                "--trace-children=yes",
            ]
        );
    }

    #[test]
    fn a_missing_suppression_file_names_where_it_was_looked_for() {
        let options = Options {
            suppressions: vec![PathBuf::from("nope.supp")],
            ..Options::default()
        };
        let err = options
            .argv(
                Tool::Memcheck,
                Path::new("/usr/bin/valgrind"),
                Path::new("/r"),
                Some(Path::new("/srv/app")),
                &strings(&["prog"]),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "suppressions file /srv/app/nope.supp does not exist (relative paths are resolved \
             against the service's working directory, /srv/app)"
        );
        assert_eq!(
            check_suppressions(&[PathBuf::from("/no/such.supp"), PathBuf::from("rel.supp")]),
            ["suppressions file /no/such.supp does not exist"]
        );
    }

    #[test]
    fn extra_args_may_not_glue_options_or_override_the_plugin() {
        let problems = check_extra_args(
            &strings(&[
                "--num-callers=30",
                "-q",
                "--xml-user-comment=two words",
                "--verbose --verbose",
                "--xml-file=/tmp/x.xml",
                "--leak-check=summary",
                "--trace-children=yes",
                "--",
                "verbose",
            ]),
            &[("--leak-check", "leak_check")],
        );
        assert_eq!(
            problems,
            [
                "`extra_args` element \"--verbose --verbose\" holds several options: give \
                 each option its own element",
                "`extra_args` element \"--xml-file=/tmp/x.xml\" sets `--xml-file`, which the \
                 plugin sets itself: the XML goes to the results folder",
                "`extra_args` element \"--leak-check=summary\" sets `--leak-check`: use the \
                 `leak_check` key instead",
                "`extra_args` element \"--trace-children=yes\" sets `--trace-children`: use \
                 the `trace_children` key instead",
                "`extra_args` element \"--\" is not a valgrind option: each element is one \
                 option starting with `-` (the service's command comes after them)",
                "`extra_args` element \"verbose\" is not a valgrind option: each element is one \
                 option starting with `-` (the service's command comes after them)",
            ]
        );
        // `--xml-user-comment` is not `--xml`.
        assert!(check_extra_args(&strings(&["--xml-user-comment=x"]), &[]).is_empty());
    }

    #[test]
    fn locate_finds_valgrind_or_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(Some(dir.path().as_os_str())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "valgrind is not installed: no executable `valgrind` on PATH (Debian package: \
             valgrind; e.g. `apt-get install valgrind`)"
        );
        assert!(locate(None).is_err());

        let fake = dir.path().join("valgrind");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        // Not executable yet: not a program.
        assert!(locate(Some(dir.path().as_os_str())).is_err());
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([Path::new("relative/bin"), dir.path()]).unwrap();
        assert_eq!(locate(Some(&path)).unwrap(), fake);
    }
}
