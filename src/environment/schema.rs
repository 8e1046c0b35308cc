//! The committed JSON Schema, and its errors turned into diagnostics that point
//! at the offending key or value. [`Schema`] is any embedded schema (`import`
//! checks the upstream deployer's files with one of its own), so every file a
//! user gives the tool gets the same located diagnostics.
//!
//! Messages are written here rather than taken from the validator: its messages
//! quote the instance, and an instance in a secret's place may be a secret.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::document::{Document, escape_token};
use crate::diagnostic::{Code, Diagnostic};

/// The schema text, as committed in `schema/environment.schema.json`.
pub const SCHEMA: &str = include_str!("../../schema/environment.schema.json");

/// A compiled schema, with the text its diagnostics quote (descriptions, keys).
pub struct Schema {
    value: Value,
    validator: Validator,
}

impl Schema {
    /// Compiles an embedded schema; a broken one is a bug caught by its tests.
    pub fn embedded(text: &str) -> Self {
        let value: Value = serde_json::from_str(text).expect("an embedded schema is JSON");
        let validator = jsonschema::draft202012::new(&value).expect("an embedded schema compiles");
        Self { value, validator }
    }

    /// Every violation of this schema in `document`.
    pub fn validate(&self, document: &Document) -> Violations {
        let mut violations = Violations::default();
        for error in self.validator.iter_errors(&document.value) {
            let found = diagnose(self, document, &error);
            if matches!(
                error.kind(),
                ValidationErrorKind::AdditionalProperties { .. }
            ) {
                violations
                    .unknown_keys
                    .extend(found.iter().map(|d| d.pointer.clone()));
            }
            violations.diagnostics.extend(found);
        }
        violations
    }

    /// The property names the schema object at `schema_pointer` allows.
    fn known_keys(&self, schema_pointer: &str) -> Vec<String> {
        self.value
            .pointer(&format!("{schema_pointer}/properties"))
            .and_then(Value::as_object)
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The description of the property at `schema_pointer`, following one `$ref`.
    fn describe(&self, schema_pointer: &str) -> Option<String> {
        let node = self.value.pointer(schema_pointer)?;
        let description = node.get("description").or_else(|| {
            let target = node.get("$ref")?.as_str()?.strip_prefix('#')?;
            self.value.pointer(target)?.get("description")
        })?;
        description.as_str().map(str::to_string)
    }
}

fn environment_schema() -> &'static Schema {
    static COMPILED: OnceLock<Schema> = OnceLock::new();
    COMPILED.get_or_init(|| Schema::embedded(SCHEMA))
}

/// The schema's verdict on a document.
#[derive(Debug, Default)]
pub struct Violations {
    pub diagnostics: Vec<Diagnostic>,
    /// Pointers of the unknown keys, which the schema reports and nothing else
    /// needs: without them the document may still be checked further.
    pub unknown_keys: Vec<String>,
}

impl Violations {
    /// Whether every violation is an unknown key.
    pub fn only_unknown_keys(&self) -> bool {
        self.diagnostics.len() == self.unknown_keys.len()
    }
}

/// Every violation of the environment schema in `document`.
pub fn validate(document: &Document) -> Violations {
    environment_schema().validate(document)
}

/// Where a violation is, and what is there, as every diagnostic needs it.
struct Site<'a> {
    schema: &'a Schema,
    document: &'a Document,
    pointer: String,
    /// The schema path of the keyword's parent: the schema of the offending value.
    keyword_parent: &'a str,
    field: String,
    instance: &'a Value,
    value_span: std::ops::Range<usize>,
    /// Whether the value stands where a secret reference belongs.
    in_secret: bool,
}

impl<'a> Site<'a> {
    fn of(schema: &'a Schema, document: &'a Document, error: &'a ValidationError<'_>) -> Self {
        let pointer = error.instance_path().as_str().to_string();
        let schema_path = error.schema_path().as_str();
        Site {
            schema,
            document,
            keyword_parent: schema_path
                .rsplit_once('/')
                .map_or("", |(parent, _)| parent),
            field: field_name(&pointer),
            instance: error.instance(),
            value_span: document.value_span(&pointer),
            in_secret: schema_path.starts_with("/$defs/secret"),
            pointer,
        }
    }

    /// An error about the value itself.
    fn error(self, code: Code, message: String) -> Diagnostic {
        Diagnostic::error(code, self.pointer, self.value_span, message)
    }
}

fn diagnose(schema: &Schema, document: &Document, error: &ValidationError<'_>) -> Vec<Diagnostic> {
    let site = Site::of(schema, document, error);
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => unknown_keys(&site, unexpected),
        ValidationErrorKind::Required { property } => vec![missing_key(site, property)],
        kind => vec![wrong_value(site, kind)],
    }
}

/// A value that is there but not as the schema wants it.
fn wrong_value(site: Site, kind: &ValidationErrorKind) -> Diagnostic {
    use ValidationErrorKind as Kind;
    match kind {
        Kind::Type { kind } => wrong_type(site, kind),
        Kind::Enum { options } => not_an_option(site, options),
        Kind::Constant { expected_value } => not_the_constant(site, expected_value),
        Kind::Pattern { .. } => invalid_format(site),
        Kind::Minimum { limit } | Kind::ExclusiveMinimum { limit } => {
            bounded(site, "at least", limit)
        }
        Kind::Maximum { limit } | Kind::ExclusiveMaximum { limit } => {
            bounded(site, "at most", limit)
        }
        Kind::MaxLength { limit } => {
            wrong_length(site, format!("is longer than {limit} characters"))
        }
        Kind::MinLength { limit } => {
            wrong_length(site, format!("is shorter than {limit} characters"))
        }
        Kind::MaxItems { limit } => wrong_length(site, format!("has more than {limit} entries")),
        kind => {
            let message = format!("`{}` is invalid ({})", site.field, kind.keyword());
            site.error(Code::SchemaViolation, message)
        }
    }
}

fn unknown_keys(site: &Site, unexpected: &[String]) -> Vec<Diagnostic> {
    let known = site.schema.known_keys(site.keyword_parent);
    unexpected
        .iter()
        .map(|key| {
            let at = format!("{}/{}", site.pointer, escape_token(key));
            let diagnostic = Diagnostic::error(
                Code::UnknownKey,
                at.clone(),
                site.document.key_span(&at),
                format!("unknown key `{}`{}", printable(key), within(&site.pointer)),
            );
            match closest(key, &known) {
                Some(close) => diagnostic.with_hint(format!("did you mean `{close}`?")),
                None => diagnostic.with_hint(format!("expected one of: {}", known.join(", "))),
            }
        })
        .collect()
}

fn missing_key(site: Site, property: &Value) -> Diagnostic {
    let key = property.as_str().unwrap_or_default();
    let at = format!("{}/{}", site.pointer, escape_token(key));
    let diagnostic = Diagnostic::error(
        Code::MissingKey,
        at,
        site.document.object_span(&site.pointer),
        format!("missing required key `{key}`{}", within(&site.pointer)),
    );
    match site
        .schema
        .describe(&format!("{}/properties/{key}", site.keyword_parent))
    {
        Some(description) => diagnostic.with_hint(format!("`{key}`: {description}")),
        None => diagnostic,
    }
}

/// A value of the wrong type; a literal where a secret reference belongs is its own case.
fn wrong_type(site: Site, kind: &TypeKind) -> Diagnostic {
    if site.in_secret && !site.instance.is_object() {
        let name = conventional_secret_name(&site.pointer);
        let message = format!("`{}` must be a secret reference, not a value", site.field);
        return site.error(Code::LiteralSecret, message).with_hint(format!(
            "write {{\"secret\": \"{name}\"}} and store the value as a CI secret named {name}; \
             secrets never go into git"
        ));
    }
    let message = format!(
        "`{}` must be {}, found {}",
        site.field,
        type_name(kind),
        json_type(site.instance)
    );
    site.error(Code::WrongType, message)
}

fn not_an_option(site: Site, options: &Value) -> Diagnostic {
    let options: Vec<String> = options
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| o.to_string())
        .collect();
    let close = site.instance.as_str().and_then(|s| {
        closest(
            s,
            &options
                .iter()
                .map(|o| o.trim_matches('"').to_string())
                .collect::<Vec<_>>(),
        )
    });
    let message = format!(
        "`{}` must be one of {}, found {}",
        site.field,
        options.join(", "),
        short(site.instance)
    );
    let diagnostic = site.error(Code::InvalidChoice, message);
    match close {
        Some(close) => diagnostic.with_hint(format!("did you mean \"{close}\"?")),
        None => diagnostic,
    }
}

fn not_the_constant(site: Site, expected_value: &Value) -> Diagnostic {
    let message = format!(
        "`{}` must be {expected_value}, found {}",
        site.field,
        short(site.instance)
    );
    site.error(Code::InvalidChoice, message)
}

fn bounded(site: Site, relation: &str, limit: &Value) -> Diagnostic {
    let message = format!(
        "`{}` must be {relation} {limit}, found {}",
        site.field,
        short(site.instance)
    );
    let description = site.schema.describe(site.keyword_parent);
    let diagnostic = site.error(Code::OutOfRange, message);
    match description {
        Some(description) => diagnostic.with_hint(description),
        None => diagnostic,
    }
}

/// A string or a list of the wrong length: `problem` follows the field's name.
fn wrong_length(site: Site, problem: String) -> Diagnostic {
    let message = format!("`{}` {problem}", site.field);
    site.error(Code::WrongLength, message)
}

fn invalid_format(site: Site) -> Diagnostic {
    let what = if site.in_secret {
        "secret names are UPPER_SNAKE_CASE: letters, digits and `_`, starting with a letter"
            .to_string()
    } else {
        site.schema
            .describe(site.keyword_parent)
            .unwrap_or_else(|| "see the schema for the expected form".into())
    };
    let message = format!(
        "`{}` has an invalid value {}",
        site.field,
        short(site.instance)
    );
    site.error(Code::InvalidFormat, message).with_hint(what)
}

/// The last token of a pointer, for messages (`/tracker/http_api` → `http_api`).
pub(crate) fn field_name(pointer: &str) -> String {
    match pointer.rsplit('/').next() {
        Some(last) if !pointer.is_empty() => last.replace("~1", "/").replace("~0", "~"),
        _ => "(document)".into(),
    }
}

fn within(pointer: &str) -> String {
    if pointer.is_empty() {
        String::new()
    } else {
        format!(" in `{}`", field_name(pointer))
    }
}

/// A short, escaped rendering of a value for a message.
fn short(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "an object".into(),
        Value::Array(_) => "an array".into(),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn type_name(kind: &TypeKind) -> String {
    let name = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "object" => "an object".to_string(),
        "array" => "an array".to_string(),
        "integer" => "an integer".to_string(),
        other => format!("a {other}"),
    };
    match kind {
        TypeKind::Single(t) => name(t),
        TypeKind::Multiple(set) => set
            .iter()
            .map(|t| name(&t))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// The known name closest to `candidate`, when close enough to be a typo.
pub fn closest(candidate: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&candidate.to_lowercase(), &k.to_lowercase()),
                k,
            )
        })
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k.clone())
}

/// The conventional secret name for the secret field at `pointer` (hints,
/// `import`): the names the shipped examples and the guides use.
pub fn conventional_secret_name(pointer: &str) -> &'static str {
    if pointer.ends_with("/admin_token") {
        "TRACKER_ADMIN_TOKEN"
    } else if pointer.ends_with("/root_password") {
        "MYSQL_ROOT_PASSWORD"
    } else if pointer.starts_with("/grafana") {
        "GRAFANA_ADMIN_PASSWORD"
    } else {
        "MYSQL_PASSWORD"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        let known = vec!["scrape_interval".to_string(), "image".to_string()];
        assert_eq!(
            closest("scrape_intervall", &known).as_deref(),
            Some("scrape_interval")
        );
        assert_eq!(closest("imag", &known).as_deref(), Some("image"));
        assert_eq!(closest("totally_else", &known), None);
    }

    #[test]
    fn the_embedded_schema_compiles_and_describes_fields() {
        let schema = environment_schema();
        assert!(
            schema
                .known_keys("/$defs/prometheus")
                .contains(&"scrape_interval".to_string())
        );
        assert!(
            schema
                .describe("/$defs/prometheus/properties/scrape_interval")
                .is_some()
        );
    }
}
