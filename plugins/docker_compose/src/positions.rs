//! Where each key and value of a compose file is written, as `line:column`, so that a warning
//! or a refusal points at the text to change. `serde_yaml_ng` (which reads the file) keeps no
//! positions, so the file is read a second time as a stream of YAML events, without
//! recursion (a deeply nested file costs no stack). Aliases and `<<` merges are followed:
//! what a service takes from an anchor is found where the anchor wrote it.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};

/// A path in the file: mapping keys and sequence indices, from the top.
pub type KeyPath = Vec<String>;

/// A `line:column` (both from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    /// The line.
    pub line: usize,
    /// The column.
    pub column: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The positions of a file's keys and values.
#[derive(Debug, Default)]
pub struct Positions {
    keys: HashMap<KeyPath, At>,
    values: HashMap<KeyPath, At>,
}

/// One position recorded under an anchor, relative to the anchored node.
#[derive(Clone)]
struct Recorded {
    path: KeyPath,
    is_key: bool,
    at: At,
}

enum Frame {
    Map {
        path: KeyPath,
        /// The key just read, waiting for its value.
        key: Option<String>,
        anchor: usize,
        log_start: usize,
    },
    Seq {
        path: KeyPath,
        next: usize,
        anchor: usize,
        log_start: usize,
        /// A sequence that is the value of `<<`: its aliases are merged into `merge_into`.
        merge_into: Option<KeyPath>,
    },
}

impl Positions {
    /// Reads the positions of `text`; a file that does not parse has none (the YAML reader
    /// says what is wrong with it).
    pub fn read(text: &str) -> Positions {
        let mut reader = EventReader::default();
        let mut parser = Parser::new_from_str(text);
        while let Ok((event, mark)) = parser.next_token() {
            let at = At {
                line: mark.line(),
                column: mark.col() + 1,
            };
            match event {
                Event::StreamEnd => break,
                other => reader.event(other, at),
            }
        }
        reader.positions
    }

    /// Where the key at `path` is written (its last element is the key).
    pub fn key(&self, path: &[String]) -> Option<At> {
        self.keys.get(path).copied()
    }

    /// Where the value at `path` is written; where its key is when the value has no
    /// position of its own.
    pub fn value(&self, path: &[String]) -> Option<At> {
        self.values
            .get(path)
            .or_else(|| self.keys.get(path))
            .copied()
    }
}

#[derive(Default)]
struct EventReader {
    positions: Positions,
    stack: Vec<Frame>,
    /// Everything recorded, in order, so that an anchored node's part can be copied.
    log: Vec<(KeyPath, bool, At)>,
    anchors: HashMap<usize, Vec<Recorded>>,
}

impl EventReader {
    fn record(&mut self, path: KeyPath, is_key: bool, at: At, merged: bool) {
        let map = if is_key {
            &mut self.positions.keys
        } else {
            &mut self.positions.values
        };
        if merged {
            map.entry(path.clone()).or_insert(at);
        } else {
            map.insert(path.clone(), at);
        }
        self.log.push((path, is_key, at));
    }

    /// The path of the node that starts now, and whether it is the value of a `<<` key
    /// (then the mapping that holds it).
    fn next_path(&mut self) -> (KeyPath, Option<KeyPath>) {
        match self.stack.last_mut() {
            None => (Vec::new(), None),
            Some(Frame::Map { path, key, .. }) => {
                let key = key.take().unwrap_or_default();
                if key == "<<" {
                    (path.clone(), Some(path.clone()))
                } else {
                    let mut p = path.clone();
                    p.push(key);
                    (p, None)
                }
            }
            Some(Frame::Seq {
                path,
                next,
                merge_into,
                ..
            }) => {
                let mut p = path.clone();
                p.push(next.to_string());
                *next += 1;
                (p, merge_into.clone())
            }
        }
    }

    /// True when the next scalar is a mapping key.
    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn event(&mut self, event: Event, at: At) {
        match event {
            Event::Scalar(text, _, anchor, _) => {
                if self.expects_key() {
                    let Some(Frame::Map { path, key, .. }) = self.stack.last_mut() else {
                        return;
                    };
                    let mut p = path.clone();
                    p.push(text.clone());
                    *key = Some(text.clone());
                    if text != "<<" {
                        self.record(p, true, at, false);
                    }
                    return;
                }
                let (path, _) = self.next_path();
                let start = self.log.len();
                self.record(path.clone(), false, at, false);
                self.anchor_done(anchor, &path, start);
            }
            Event::Alias(anchor) => {
                let (path, merge_into) = self.next_path();
                let recorded = self.anchors.get(&anchor).cloned().unwrap_or_default();
                match merge_into {
                    // `<<: *base` (or a list of them): the anchor's keys join this mapping,
                    // unless it writes them itself.
                    Some(target) => {
                        for r in recorded.into_iter().filter(|r| !r.path.is_empty()) {
                            let mut p = target.clone();
                            p.extend(r.path);
                            self.record(p, r.is_key, r.at, true);
                        }
                    }
                    None => {
                        self.record(path.clone(), false, at, false);
                        for r in recorded.into_iter().filter(|r| !r.path.is_empty()) {
                            let mut p = path.clone();
                            p.extend(r.path);
                            self.record(p, r.is_key, r.at, false);
                        }
                    }
                }
            }
            Event::MappingStart(anchor, _) => {
                let (path, _) = self.next_path();
                let log_start = self.log.len();
                self.record(path.clone(), false, at, false);
                self.stack.push(Frame::Map {
                    path,
                    key: None,
                    anchor,
                    log_start,
                });
            }
            Event::SequenceStart(anchor, _) => {
                // A key read as a sequence start is a complex key: not something compose has.
                let (path, merge_into) = self.next_path();
                let log_start = self.log.len();
                self.record(path.clone(), false, at, false);
                let merge_into = merge_into.filter(|target| *target == path);
                self.stack.push(Frame::Seq {
                    path,
                    next: 0,
                    anchor,
                    log_start,
                    merge_into,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(
                    Frame::Map {
                        path,
                        anchor,
                        log_start,
                        ..
                    }
                    | Frame::Seq {
                        path,
                        anchor,
                        log_start,
                        ..
                    },
                ) = self.stack.pop()
                {
                    self.anchor_done(anchor, &path, log_start);
                }
            }
            _ => {}
        }
    }

    /// Keeps what an anchored node recorded, relative to it, for its aliases.
    fn anchor_done(&mut self, anchor: usize, path: &KeyPath, start: usize) {
        if anchor == 0 {
            return;
        }
        let recorded = self.log[start..]
            .iter()
            .filter(|(p, _, _)| p.starts_with(path))
            .map(|(p, is_key, at)| Recorded {
                path: p[path.len()..].to_vec(),
                is_key: *is_key,
                at: *at,
            })
            .collect();
        self.anchors.insert(anchor, recorded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(parts: &[&str]) -> KeyPath {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_values_items_aliases_and_merges_have_their_lines_and_columns() {
        let text = "x-base: &base\n  restart: always\n  labels: {a: b}\nservices:\n  web:\n    <<: *base\n    image: \"img\"\n    ports: [\"80\", '81']\n    command:\n      - run\n  db:\n    <<: [*base]\n    restart: \"no\"\n";
        let p = Positions::read(text);
        let at = |line, column| Some(At { line, column });
        assert_eq!(p.key(&path(&["services", "web", "image"])), at(7, 5));
        assert_eq!(p.value(&path(&["services", "web", "image"])), at(7, 12));
        assert_eq!(
            p.value(&path(&["services", "web", "ports", "1"])),
            at(8, 19)
        );
        assert_eq!(
            p.value(&path(&["services", "web", "command", "0"])),
            at(10, 9)
        );
        // Merged from the anchor: where the anchor wrote it.
        assert_eq!(p.key(&path(&["services", "web", "restart"])), at(2, 3));
        assert_eq!(p.key(&path(&["services", "web", "labels", "a"])), at(3, 12));
        // Written in the service itself: there, whatever the merge brings.
        assert_eq!(p.key(&path(&["services", "db", "restart"])), at(13, 5));
        assert_eq!(p.key(&path(&["services", "db", "labels"])), at(3, 3));
    }

    #[test]
    fn a_file_that_stops_parsing_keeps_what_came_before() {
        let p = Positions::read("services:\n  web: [\n");
        assert_eq!(
            p.key(&path(&["services", "web"])),
            Some(At { line: 2, column: 3 })
        );
    }
}
