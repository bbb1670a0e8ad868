//! Free ports on request: `{port:NAME}` in a service's `command`, `env` values or
//! `ready = { tcp = "{port:NAME}" }` becomes a port picked for this run.
//!
//! Every `NAME` gets one port per run, shared by every service that names it (the server
//! listens on `{port:echo}`, the client connects to `{port:echo}`). The host picks them by
//! binding port 0 on all addresses, all at once (so two names never get the same port), and
//! releases them at once, milliseconds before the services bind them; the kernel hands out ephemeral ports
//! spread over its range, so runs started together get different ones. The ports are
//! recorded in the results folder's `ports.json` and shown by `run --dry-run`.

use std::{collections::BTreeMap, net::TcpListener};

use panther_plugin_api::ReadyCheck;
use serde::Deserialize;

use crate::experiment::ServiceDef;

const OPEN: &str = "{port:";

/// `ready.tcp`: a fixed port, or a `{port:NAME}` placeholder.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TcpPort {
    /// A fixed port.
    Number(u16),
    /// `"{port:NAME}"`.
    Placeholder(String),
}

/// The `NAME`s of every placeholder in `text`, or what is wrong with one.
pub fn names_in(text: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        let after = &rest[at + OPEN.len()..];
        let Some(end) = after.find('}') else {
            return Err(format!("`{OPEN}` without a closing `}}` in `{text}`"));
        };
        let name = &after[..end];
        if !valid_name(name) {
            return Err(format!(
                "`{OPEN}{name}}}` in `{text}`: a port name is 1 to 64 letters, digits, `_` or `-`"
            ));
        }
        names.push(name.to_string());
        rest = &after[end + 1..];
    }
    Ok(names)
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The `NAME` of a `ready.tcp` placeholder, which must be the placeholder alone.
pub fn ready_name(text: &str) -> Result<String, String> {
    match names_in(text)?.as_slice() {
        [name] if text == format!("{OPEN}{name}}}") => Ok(name.clone()),
        _ => Err(format!(
            "`ready.tcp` is a port number or a `{OPEN}NAME}}` placeholder, not `{text}`"
        )),
    }
}

/// Problems with the placeholders of one service's command and environment.
pub fn check(command: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, arg) in command.iter().enumerate() {
        if let Err(why) = names_in(arg) {
            problems.push(format!("`command[{i}]`: {why}"));
        }
    }
    for (key, value) in env {
        if let Err(why) = names_in(value) {
            problems.push(format!("`env.{key}`: {why}"));
        }
    }
    problems
}

/// The placeholder names a service uses.
pub fn names_of(def: &ServiceDef) -> Vec<String> {
    let texts = def.command.iter().chain(def.env.values());
    let mut names: Vec<String> = texts
        .flat_map(|t| names_in(t).unwrap_or_default())
        .collect();
    names.extend(def.ready_port.clone());
    names.sort();
    names.dedup();
    names
}

/// The ports picked for one run, by name.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(transparent)]
pub struct Ports(BTreeMap<String, u16>);

impl Ports {
    /// Picks a free port for every placeholder name the services use.
    pub fn pick(services: &[ServiceDef]) -> std::io::Result<Ports> {
        let mut names: Vec<String> = services.iter().flat_map(names_of).collect();
        names.sort();
        names.dedup();
        // Held until all are picked, so that no two names share a port.
        let mut held = Vec::with_capacity(names.len());
        let mut ports = BTreeMap::new();
        for name in names {
            let listener = TcpListener::bind(("0.0.0.0", 0))?;
            ports.insert(name, listener.local_addr()?.port());
            held.push(listener);
        }
        Ok(Ports(ports))
    }

    /// No placeholders in the experiment.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every placeholder replaced by its port.
    pub fn substitute(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, port) in &self.0 {
            out = out.replace(&format!("{OPEN}{name}}}"), &port.to_string());
        }
        out
    }

    /// The service with its placeholders resolved.
    pub fn apply(&self, def: &ServiceDef) -> ServiceDef {
        let mut def = def.clone();
        def.command = def.command.iter().map(|a| self.substitute(a)).collect();
        for value in def.env.values_mut() {
            *value = self.substitute(value);
        }
        if let (Some(name), Some(ready)) = (&def.ready_port, def.ready.as_mut()) {
            if let (ReadyCheck::Tcp { port, .. }, Some(picked)) =
                (&mut ready.check, self.0.get(name))
            {
                *port = *picked;
            }
        }
        def
    }

    /// The ports one service uses.
    pub fn of(&self, def: &ServiceDef) -> BTreeMap<String, u16> {
        names_of(def)
            .into_iter()
            .filter_map(|n| self.0.get(&n).map(|p| (n, *p)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_bad_ones_named() {
        assert_eq!(
            names_in("127.0.0.1:{port:echo}/{port:b-2}").unwrap(),
            ["echo", "b-2"]
        );
        assert!(names_in("no placeholder {port}").unwrap().is_empty());
        assert!(names_in("{port:echo").unwrap_err().contains("closing"));
        assert!(names_in("{port:a b}").unwrap_err().contains("port name"));
        assert!(names_in("{port:}").is_err());
        assert_eq!(ready_name("{port:echo}").unwrap(), "echo");
        assert!(ready_name("x{port:echo}").is_err());
    }
}
