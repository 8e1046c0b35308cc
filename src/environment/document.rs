//! Strict JSON parsing that remembers where every value came from.
//!
//! serde_json alone gives neither positions for schema errors nor duplicate-key
//! detection, so the text is parsed once with `jsonc-parser` (all JSONC leniencies
//! off) into an AST, from which both the `serde_json::Value` and an index of
//! JSON pointer → byte ranges are built.

use std::collections::HashMap;
use std::ops::Range;

use jsonc_parser::ast::{self, ObjectPropName};
use jsonc_parser::common::Ranged;
use jsonc_parser::{CollectOptions, CommentCollectionStrategy, ParseOptions};
use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic};

/// Environment files are a few kilobytes; anything this large is a mistake,
/// refused before parsing so that it costs nothing.
pub const MAX_FILE_SIZE: usize = 1024 * 1024;
/// Deeper nesting than any valid file has; checked before parsing so that a
/// hostile file cannot exhaust the stack of the recursive parser.
pub const MAX_DEPTH: usize = 32;

/// Where a value and (for object members) its key sit in the text.
#[derive(Debug, Clone)]
pub struct Place {
    pub key: Option<Range<usize>>,
    pub value: Range<usize>,
}

/// A parsed file: its value and the position of everything in it.
#[derive(Debug)]
pub struct Document {
    pub value: Value,
    text: String,
    places: HashMap<String, Place>,
}

impl Document {
    /// Parses `bytes` strictly. On failure returns the diagnostics (never panics).
    pub fn parse(bytes: &[u8]) -> Result<Self, Vec<Diagnostic>> {
        if bytes.len() > MAX_FILE_SIZE {
            return Err(vec![
                Diagnostic::error(
                    Code::FileTooLarge,
                    "",
                    0..0,
                    format!(
                        "file is {} bytes; environment files are limited to {} bytes",
                        bytes.len(),
                        MAX_FILE_SIZE
                    ),
                )
                .with_hint("is this really an environment file?"),
            ]);
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let at = e.valid_up_to();
            vec![
                Diagnostic::error(Code::NotUtf8, "", at..at + 1, "file is not valid UTF-8")
                    .with_hint("save the file as UTF-8"),
            ]
        })?;
        // Refused, as Python's json, Node's JSON.parse and serde_json refuse
        // it (RFC 8259 forbids writing one): other tools that read the file
        // would trip on it too.
        if text.starts_with('\u{FEFF}') {
            return Err(vec![
                Diagnostic::error(
                    Code::ByteOrderMark,
                    "",
                    0..3,
                    "file starts with a UTF-8 byte-order mark (BOM)",
                )
                .with_hint("save the file as UTF-8 without a BOM (in most editors: the encoding \"UTF-8\", not \"UTF-8 with BOM\")"),
            ]);
        }
        if let Some(at) = too_deep(text) {
            return Err(vec![Diagnostic::error(
                Code::TooDeep,
                "",
                at..at + 1,
                format!("nesting deeper than {MAX_DEPTH} levels"),
            )]);
        }
        let options = ParseOptions {
            allow_comments: false,
            allow_loose_object_property_names: false,
            allow_trailing_commas: false,
            allow_missing_commas: false,
            allow_single_quoted_strings: false,
            allow_hexadecimal_numbers: false,
            allow_unary_plus_numbers: false,
            allow_bare_decimal_point_numbers: false,
            allow_non_finite_numbers: false,
            allow_extended_string_escapes: false,
        };
        let collect = CollectOptions {
            comments: CommentCollectionStrategy::Off,
            tokens: false,
        };
        let parsed = jsonc_parser::parse_to_ast(text, &collect, &options).map_err(|e| {
            let range = e.range();
            vec![
                Diagnostic::error(
                    Code::SyntaxError,
                    "",
                    range.start..range.end.max(range.start + 1),
                    {
                        let kind = e.kind().to_string();
                        format!("invalid JSON: {}", lowercase_first(&kind))
                    },
                )
                .with_hint("environment files are strict JSON: no comments, no trailing commas"),
            ]
        })?;
        let Some(root) = parsed.value else {
            return Err(vec![
                Diagnostic::error(Code::EmptyFile, "", 0..0, "file is empty")
                    .with_hint("run `tracker-gitops init NAME` for a complete example"),
            ]);
        };
        let mut builder = Builder {
            text,
            places: HashMap::new(),
            problems: Vec::new(),
        };
        let value = builder.value(&root, String::new(), None);
        if builder.problems.is_empty() {
            Ok(Self {
                value,
                text: text.to_string(),
                places: builder.places,
            })
        } else {
            Err(builder.problems)
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        crate::text::line_column(&self.text, offset)
    }

    pub fn place(&self, pointer: &str) -> Option<&Place> {
        self.places.get(pointer)
    }

    /// The span a diagnostic about `pointer` should underline: the value, or the
    /// nearest enclosing value that exists (for a missing member).
    pub fn value_span(&self, pointer: &str) -> Range<usize> {
        let mut pointer = pointer;
        loop {
            if let Some(place) = self.places.get(pointer) {
                return place.value.clone();
            }
            match pointer.rfind('/') {
                Some(i) => pointer = &pointer[..i],
                None => return 0..0,
            }
        }
    }

    /// The key of an object member, falling back to its value.
    pub fn key_span(&self, pointer: &str) -> Range<usize> {
        match self.places.get(pointer) {
            Some(Place { key: Some(key), .. }) => key.clone(),
            _ => self.value_span(pointer),
        }
    }

    /// The span of the key that names the object at `pointer` (the whole value for
    /// the root): where "missing member" diagnostics point.
    pub fn object_span(&self, pointer: &str) -> Range<usize> {
        match self.places.get(pointer) {
            Some(Place { key: Some(key), .. }) => key.clone(),
            Some(place) => place.value.start..place.value.start + 1,
            None => self.value_span(pointer),
        }
    }
}

/// Escapes one reference token of a JSON pointer (RFC 6901).
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The byte offset at which brackets nest deeper than `MAX_DEPTH`, if they do.
fn too_deep(text: &str) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, byte) in text.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

struct Builder<'t> {
    text: &'t str,
    places: HashMap<String, Place>,
    problems: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn value(&mut self, node: &ast::Value, pointer: String, key: Option<Range<usize>>) -> Value {
        let range = node.range();
        let value = match node {
            ast::Value::NullKeyword(_) => Value::Null,
            ast::Value::BooleanLit(b) => Value::Bool(b.value),
            ast::Value::NumberLit(n) => self.number(n.value, &pointer, range.start..range.end),
            ast::Value::StringLit(s) => {
                self.check_raw_string(range.start..range.end, &pointer);
                Value::String(s.value.to_string())
            }
            ast::Value::Array(array) => Value::Array(
                array
                    .elements
                    .iter()
                    .enumerate()
                    .map(|(i, element)| self.value(element, format!("{pointer}/{i}"), None))
                    .collect(),
            ),
            ast::Value::Object(object) => {
                let mut map = serde_json::Map::new();
                let mut first_seen: HashMap<&str, Range<usize>> = HashMap::new();
                for prop in &object.properties {
                    let (name, key_range) = match &prop.name {
                        ObjectPropName::String(s) => (s.value.as_ref(), s.range),
                        ObjectPropName::Word(w) => (w.value, w.range),
                    };
                    let key_range = key_range.start..key_range.end;
                    self.check_raw_string(key_range.clone(), &pointer);
                    let child = format!("{pointer}/{}", escape_token(name));
                    if let Some(first) = first_seen.get(name) {
                        let (line, _) = crate::text::line_column(self.text, first.start);
                        self.problems.push(
                            Diagnostic::error(
                                Code::DuplicateKey,
                                child.clone(),
                                key_range.clone(),
                                format!("duplicate key `{name}`"),
                            )
                            .with_hint(format!(
                                "`{name}` is already set on line {line}; keep one of them"
                            )),
                        );
                        continue;
                    }
                    first_seen.insert(name, key_range.clone());
                    let value = self.value(&prop.value, child, Some(key_range));
                    map.insert(name.to_string(), value);
                }
                Value::Object(map)
            }
        };
        self.places.insert(
            pointer,
            Place {
                key,
                value: range.start..range.end,
            },
        );
        value
    }

    fn number(&mut self, raw: &str, pointer: &str, span: Range<usize>) -> Value {
        match serde_json::from_str::<serde_json::Number>(raw) {
            Ok(number) => Value::Number(number),
            Err(_) => {
                self.problems.push(
                    Diagnostic::error(Code::NumberTooLarge, pointer, span, "number out of range")
                        .with_hint("use a number that fits in 64 bits"),
                );
                Value::Null
            }
        }
    }

    /// JSON forbids raw control characters inside strings; the lenient scanner
    /// accepts some of them.
    fn check_raw_string(&mut self, span: Range<usize>, pointer: &str) {
        let raw = &self.text[span.clone()];
        if let Some(i) = raw.bytes().position(|b| b < 0x20) {
            let at = span.start + i;
            self.problems.push(
                Diagnostic::error(
                    Code::ControlCharacter,
                    pointer,
                    at..at + 1,
                    "control character inside a string",
                )
                .with_hint("write it escaped, for example \\n or \\u0000"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &[u8]) -> Vec<String> {
        Document::parse(text)
            .unwrap_err()
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn indexes_keys_and_values_by_pointer() {
        let doc = Document::parse(br#"{"a": {"b/c": [1, "x"]}}"#).unwrap();
        let place = doc.place("/a/b~1c/1").unwrap();
        assert_eq!(place.value, 18..21);
        assert_eq!(doc.key_span("/a/b~1c"), 7..12);
        assert_eq!(doc.value_span("/a/missing/deeper"), 6..23);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let diags = Document::parse(b"{\"a\": 1,\n \"a\": 2}").unwrap_err();
        assert_eq!(diags[0].message, "duplicate key `a`");
        assert_eq!(diags[0].span, 10..13);
        assert!(diags[0].hint.as_deref().unwrap().contains("line 1"));
    }

    #[test]
    fn lenient_syntax_is_refused() {
        for text in [
            &b"{\"a\": 1,}"[..],
            b"{// c\n}",
            b"{a: 1}",
            b"{\"a\": 'x'}",
            b"{\"a\": 0x1}",
        ] {
            assert!(errors(text)[0].starts_with("invalid JSON"), "{text:?}");
        }
    }

    #[test]
    fn hostile_inputs_get_errors_not_panics() {
        assert_eq!(errors(b""), ["file is empty"]);
        assert_eq!(errors(b"{\"a\": \"\xff\"}"), ["file is not valid UTF-8"]);
        let deep = "[".repeat(10_000);
        assert_eq!(errors(deep.as_bytes()), ["nesting deeper than 32 levels"]);
        assert_eq!(errors(b"{\"a\": 1e999999}"), ["number out of range"]);
        assert_eq!(
            errors(b"{\"a\": \"x\ny\"}"),
            ["control character inside a string"]
        );
        let big = vec![b' '; MAX_FILE_SIZE + 1];
        assert!(errors(&big)[0].contains("limited to"));
    }
}
