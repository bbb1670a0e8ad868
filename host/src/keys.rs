//! Unknown keys in a TOML file, every one of them at once.
//!
//! serde stops at the first unknown key, so a file with three typos would take three runs of
//! `check` to fix. Before the file is deserialized, [`unknown`] walks its tables against a
//! [`Shape`] (the keys each table allows, taken from the serde types themselves, so the two
//! cannot drift apart) and reports every unknown key with its position, in serde's words.
//! [`blanked`] then replaces those keys by spaces — offsets, and so the positions of
//! everything else, stay the same — so that the rest of the file can still be read and
//! checked.

use std::ops::Range;

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, Visitor};
use toml_edit::{ImDocument, Item, TableLike, Value};

/// The keys a table allows, and the shapes of the tables under some of them. Keys without a
/// nested shape hold values, or tables that belong to a plugin and are checked by its schema.
#[derive(Debug, Clone)]
pub struct Shape {
    allowed: &'static [&'static str],
    nested: Vec<(&'static str, Shape)>,
}

impl Shape {
    /// The keys of the serde struct `T` (including its aliases).
    pub fn of<'de, T: Deserialize<'de>>() -> Shape {
        Shape {
            allowed: fields_of::<T>(),
            nested: Vec::new(),
        }
    }

    /// The table (or array of tables) under `key` has `shape`.
    pub fn with(mut self, key: &'static str, shape: Shape) -> Shape {
        self.nested.push((key, shape));
        self
    }
}

/// One unknown key.
#[derive(Debug, Clone, PartialEq)]
pub struct Unknown {
    /// Where its key starts.
    pub offset: usize,
    /// The key.
    pub key: String,
    /// What is wrong, as serde says it: ``unknown field `x`, expected one of …``.
    pub message: String,
    /// The text it occupies (key, value, and the body of a table), to blank out.
    blank: Vec<Range<usize>>,
    /// Whether it is an entry of an inline table, whose separating comma goes with it.
    inline: bool,
}

/// Every unknown key of `text`, in the order they appear. A text that is not valid TOML
/// gives none: its syntax error is reported when it is deserialized.
pub fn unknown(text: &str, shape: &Shape) -> Vec<Unknown> {
    let Ok(document) = ImDocument::parse(text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    walk(
        text.as_bytes(),
        document.as_table(),
        false,
        shape,
        &mut found,
    );
    found.sort_by_key(|u| u.offset);
    for u in found.iter_mut().filter(|u| u.inline) {
        if let Some(range) = u.blank.first_mut() {
            with_comma(text.as_bytes(), range);
        }
    }
    found
}

/// Widens an inline-table entry to the comma after it, or else the one before it, so that
/// `{ a = 1, b = 2 }` without `b` is still `{ a = 1 }`.
fn with_comma(text: &[u8], range: &mut Range<usize>) {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let after = range.end + text[range.end..].iter().take_while(|b| blank(b)).count();
    if text.get(after) == Some(&b',') {
        range.end = after + 1;
        return;
    }
    let before = range.start
        - text[..range.start]
            .iter()
            .rev()
            .take_while(|b| blank(b))
            .count();
    if before > 0 && text[before - 1] == b',' {
        range.start = before - 1;
    }
}

/// `text` with the unknown keys replaced by spaces (newlines kept).
pub fn blanked(text: &str, unknown: &[Unknown]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for range in unknown.iter().flat_map(|u| &u.blank) {
        let (start, end) = (range.start.min(text.len()), range.end.min(text.len()));
        for byte in &mut bytes[start..end.max(start)] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    }
    // Whole UTF-8 sequences are replaced (spans start and end on character boundaries).
    String::from_utf8(bytes).unwrap_or_else(|_| text.to_string())
}

/// Deserializes `text` as if its unknown keys were not there. The error, if any, is one to
/// report besides the unknown keys (`None` when there is nothing more to say); its offsets
/// are those of `text`.
pub fn deserialize<T: DeserializeOwned>(
    text: &str,
    unknown: &[Unknown],
) -> Result<T, Option<toml::de::Error>> {
    if unknown.is_empty() {
        return toml::from_str(text).map_err(Some);
    }
    let readable = blanked(text, unknown);
    match toml::from_str::<T>(&readable) {
        Ok(value) => Ok(value),
        // Still TOML: a wrong type or value elsewhere, at the same offsets.
        Err(e) if toml::from_str::<toml::Table>(&readable).is_ok() => Err(Some(e)),
        // Blanking left something that is not TOML (a dotted unknown key): the original's
        // error, unless it is one of the unknown keys.
        Err(_) => Err(toml::from_str::<T>(text)
            .err()
            .filter(|e| !e.message().starts_with("unknown field"))),
    }
}

fn walk(text: &[u8], table: &dyn TableLike, inline: bool, shape: &Shape, found: &mut Vec<Unknown>) {
    for (name, item) in table.iter() {
        let Some((key, _)) = table.get_key_value(name) else {
            continue;
        };
        let offset = key.span().map_or(0, |s| s.start);
        if !shape.allowed.contains(&name) {
            let mut blank = Vec::new();
            // In `known.unknown = 1` the entry starts at `known`.
            let start = if table.is_dotted() {
                dotted_start(text, offset)
            } else {
                offset
            };
            spans(text, start, item, &mut blank);
            found.push(Unknown {
                offset,
                key: name.to_string(),
                message: format!("unknown field `{name}`, {}", expected(shape.allowed)),
                blank,
                inline,
            });
            continue;
        }
        let Some((_, nested)) = shape.nested.iter().find(|(k, _)| *k == name) else {
            continue;
        };
        match item {
            Item::ArrayOfTables(tables) => {
                for t in tables.iter() {
                    walk(text, t, false, nested, found);
                }
            }
            Item::Value(Value::Array(values)) => {
                for v in values.iter() {
                    if let Some(t) = v.as_inline_table() {
                        walk(text, t, true, nested, found);
                    }
                }
            }
            other => {
                if let Some(t) = other.as_table_like() {
                    walk(text, t, other.is_inline_table(), nested, found);
                }
            }
        }
    }
}

/// The text an item occupies, starting at its key.
fn spans(text: &[u8], key_start: usize, item: &Item, blank: &mut Vec<Range<usize>>) {
    match item {
        Item::Value(value) => {
            if let Some(span) = value.span() {
                blank.push(key_start..span.end);
            }
        }
        Item::Table(table) => {
            if let Some(header) = table.span() {
                blank.push(header);
            }
            for (name, child) in table.iter() {
                if let Some((key, _)) = table.get_key_value(name) {
                    let start = key.span().map_or(key_start, |s| s.start);
                    // The entries of `unknown.a = 1` start at `unknown`.
                    let start = if table.is_dotted() {
                        dotted_start(text, start)
                    } else {
                        start
                    };
                    spans(text, start, child, blank);
                }
            }
        }
        Item::ArrayOfTables(tables) => {
            for table in tables.iter() {
                spans(text, key_start, &Item::Table(table.clone()), blank);
            }
        }
        Item::None => {}
    }
}

/// Where the dotted key that ends with the key at `at` starts: back to the start of its line
/// or the `{` or `,` before it in an inline table, then forward over blanks.
fn dotted_start(text: &[u8], at: usize) -> usize {
    let mut start = at.min(text.len());
    while start > 0 && !matches!(text[start - 1], b'\n' | b',' | b'{') {
        start -= 1;
    }
    while start < at && matches!(text[start], b' ' | b'\t') {
        start += 1;
    }
    start
}

/// serde's wording of the allowed keys.
fn expected(allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
    match quoted.as_slice() {
        [] => "there are no fields".to_string(),
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        more => format!("expected one of {}", more.join(", ")),
    }
}

/// The field names (and aliases) serde's derive gives a struct: it hands them to
/// `deserialize_struct`, which this deserializer records instead of reading anything.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Recorder<'a>(&'a mut &'static [&'static str]);

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fields recorded")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    impl<'de> Deserializer<'de> for Recorder<'_> {
        type Error = Stop;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Recorder(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        a: Option<u8>,
        #[serde(alias = "bee")]
        b: Option<u8>,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        name: Option<String>,
        inner: Option<Vec<Inner>>,
    }

    fn shape() -> Shape {
        Shape::of::<Outer>().with("inner", Shape::of::<Inner>())
    }

    #[test]
    fn every_unknown_key_is_found_and_blanked() {
        let text =
            "nmae = \"x\"\n[[inner]]\na = 1\nc = [1,\n 2]\n[[inner]]\nd = 2\n[extra]\ne = 1\n";
        let found = unknown(text, &shape());
        let messages: Vec<&str> = found.iter().map(|u| u.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "unknown field `nmae`, expected `name` or `inner`",
                "unknown field `c`, expected one of `a`, `b`, `bee`",
                "unknown field `d`, expected one of `a`, `b`, `bee`",
                "unknown field `extra`, expected `name` or `inner`",
            ]
        );
        assert_eq!(found[1].offset, text.find("c =").unwrap());
        let rest = blanked(text, &found);
        assert_eq!(rest.len(), text.len());
        assert_eq!(rest.lines().count(), text.lines().count());
        assert!(unknown(&rest, &shape()).is_empty(), "{rest}");
        let table: toml::Table = toml::from_str(&rest).unwrap();
        assert_eq!(table["inner"][0]["a"].as_integer(), Some(1));
    }

    #[test]
    fn an_unknown_entry_of_an_inline_table_takes_its_comma() {
        for text in [
            "inner = [{ a = 1, x = 2 }]\n",
            "inner = [{ x = 2, a = 1 }]\n",
            "inner = [{ x = 2 }]\n",
        ] {
            let found = unknown(text, &shape());
            assert_eq!(found.len(), 1, "{text}");
            let rest = blanked(text, &found);
            assert!(toml::from_str::<toml::Table>(&rest).is_ok(), "{rest}");
        }
    }

    #[test]
    fn dotted_unknown_keys_are_blanked_whole() {
        let text = "name = 1\nextra.a = 1\nextra.b.c = 2\n[[inner]]\nx.y = 3\n";
        let found = unknown(text, &shape());
        assert_eq!(found.len(), 2, "{found:?}");
        let rest = blanked(text, &found);
        assert!(toml::from_str::<toml::Table>(&rest).is_ok(), "{rest}");
        assert!(unknown(&rest, &shape()).is_empty(), "{rest}");
    }

    #[test]
    fn invalid_toml_is_left_to_the_parser() {
        assert!(unknown("a = ", &shape()).is_empty());
    }
}
