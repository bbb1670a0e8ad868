//! Plugin configurations against the JSON Schema each plugin publishes in its manifest.
//!
//! Compiling a schema is the costly part (the library first checks it against its draft's
//! meta-schema, which it compiles once per process), far more than a whole run of a small
//! experiment. So the work is put where it is paid once:
//! - a plugin's schema is checked against the meta-schema when its file is probed
//!   ([`check`]); the answer is cached with the manifest, and a broken schema is that file's
//!   load error;
//! - a run validates only the configurations that can fail: an empty table against a schema
//!   that provably accepts it needs no compiled validator ([`accepts_empty_object`]), which is
//!   what most plugin uses are (a network environment or a reporter with its defaults);
//! - a schema compiled once is kept for the rest of the process (several experiments use the
//!   same plugins).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use serde_json::Value;

/// Checks `schema` against its draft's meta-schema: `Err` says what is wrong with it.
pub fn check(schema: &Value) -> Result<(), String> {
    if schema.is_null() {
        return Ok(());
    }
    jsonschema::meta::validate(schema).map_err(|e| at_path(&e.instance_path().to_string(), e))
}

/// An error located in a JSON document by its JSON Pointer, written with dots.
fn at_path(pointer: &str, error: impl std::fmt::Display) -> String {
    if pointer.is_empty() {
        error.to_string()
    } else {
        format!(
            "at `{}`: {error}",
            pointer.trim_start_matches('/').replace('/', ".")
        )
    }
}

/// Validates a plugin configuration against its JSON Schema; every violation, by path.
pub fn validate(schema: &Value, config: &Value) -> Result<(), Vec<String>> {
    if schema.is_null() || (is_empty_object(config) && accepts_empty_object(schema)) {
        return Ok(());
    }
    let validator =
        compiled(schema).map_err(|e| vec![format!("the plugin's schema is invalid: {e}")])?;
    let errors: Vec<String> = validator
        .iter_errors(config)
        .map(|e| at_path(&e.instance_path().to_string(), e))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn is_empty_object(value: &Value) -> bool {
    value.as_object().is_some_and(|o| o.is_empty())
}

/// Whether `{}` is valid against `schema`, answered without compiling it: only for schemas
/// made of keywords that say nothing about an object without properties (any other keyword
/// answers `false`, and the schema is compiled).
pub fn accepts_empty_object(schema: &Value) -> bool {
    /// Keywords that only constrain properties that are present, or only annotate.
    const SILENT_ON_EMPTY: &[&str] = &[
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "properties",
        "patternProperties",
        "additionalProperties",
        "unevaluatedProperties",
        "propertyNames",
        "dependencies",
        "dependentRequired",
        "dependentSchemas",
        "maxProperties",
    ];
    match schema {
        Value::Bool(accepts) => *accepts,
        Value::Object(keywords) => keywords
            .iter()
            .all(|(keyword, value)| match keyword.as_str() {
                "type" => match value {
                    Value::String(t) => t == "object",
                    Value::Array(types) => types.iter().any(|t| t == "object"),
                    _ => false,
                },
                "required" => value.as_array().is_some_and(|r| r.is_empty()),
                "minProperties" => value.as_u64() == Some(0),
                other => SILENT_ON_EMPTY.contains(&other),
            }),
        _ => false,
    }
}

type Compiled = Result<Arc<jsonschema::Validator>, String>;

/// The schema's validator, compiled on first use in this process.
fn compiled(schema: &Value) -> Compiled {
    static CACHE: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    let key = schema.to_string();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return found.clone();
    }
    let made = jsonschema::validator_for(schema)
        .map(Arc::new)
        .map_err(|e| e.to_string());
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, made.clone());
    made
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The shortcut agrees with the compiled validator on every schema it answers for.
    #[test]
    fn the_empty_object_shortcut_agrees_with_the_validator() {
        let schemas = [
            json!(true),
            json!(false),
            json!({}),
            json!({"type": "object", "properties": {"path": {"type": "string"}}}),
            json!({"type": "object", "properties": {"a": {}}, "required": []}),
            json!({"type": "object", "required": ["path"]}),
            json!({"type": "object", "minProperties": 1}),
            json!({"type": "object", "minProperties": 0, "additionalProperties": false}),
            json!({"type": ["object", "null"]}),
            json!({"type": "string"}),
            json!({"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}),
            json!({"$ref": "#/$defs/x", "$defs": {"x": {"required": ["a"]}}}),
            json!({"not": {"type": "object"}}),
            json!({"enum": [1]}),
        ];
        let empty = json!({});
        for schema in schemas {
            let compiled = jsonschema::validator_for(&schema).unwrap().is_valid(&empty);
            if accepts_empty_object(&schema) {
                assert!(compiled, "the shortcut accepted {{}} against {schema}");
            }
            assert_eq!(
                validate(&schema, &empty).is_ok(),
                compiled,
                "validate disagrees with the validator on {schema}"
            );
        }
    }

    #[test]
    fn a_broken_schema_is_found_by_the_check() {
        assert!(check(&json!({"type": "object", "properties": 5})).is_err());
        assert!(check(&json!({"type": "object", "required": "path"})).is_err());
        assert!(check(&json!({"type": "object", "properties": {"a": {"type": "string"}}})).is_ok());
    }
}
