//! Rendering: an environment and its stack become a [`Tree`] of files through
//! handlebars templates. Values from environment files reach the files through
//! quoting helpers, so none can add a key or break a file; what the templates
//! insert raw (service names, mount paths, notes) is fixed by the stack.

mod context;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::environment::{ConfigSchema, Database, Environment};
use crate::stack::{Part, Stack, URL_ENCODED_PREFIX, backup, caddy, grafana, prometheus, tracker};
use crate::tree::Tree;

/// The templates shipped in the binary, by name.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "docker-compose.yml.hbs",
        include_str!("../../templates/docker-compose.yml.hbs"),
    ),
    (
        "backup.sh.hbs",
        include_str!("../../templates/backup.sh.hbs"),
    ),
    (
        "tracker-2.0.0.toml.hbs",
        include_str!("../../templates/tracker-2.0.0.toml.hbs"),
    ),
    (
        "tracker-3.0.0.toml.hbs",
        include_str!("../../templates/tracker-3.0.0.toml.hbs"),
    ),
    (
        "prometheus.yml.hbs",
        include_str!("../../templates/prometheus.yml.hbs"),
    ),
    (
        "grafana-datasources.yml.hbs",
        include_str!("../../templates/grafana-datasources.yml.hbs"),
    ),
    (
        "grafana-dashboards.yml.hbs",
        include_str!("../../templates/grafana-dashboards.yml.hbs"),
    ),
    (
        "Caddyfile.hbs",
        include_str!("../../templates/Caddyfile.hbs"),
    ),
];

/// Where the machine-readable stack goes in the tree; plans compare it.
pub const STACK_FILE: &str = ".tracker-gitops/stack.json";
pub const COMPOSE_FILE: &str = "docker-compose.yml";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("template {name}{}: {message}", at(*line, *column))]
    Template {
        name: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("cannot read templates from {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: unknown template `{name}`; templates are: {known}")]
    UnknownTemplate {
        path: PathBuf,
        name: String,
        known: String,
    },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// The compiled templates with their helpers.
pub struct Templates {
    registry: Handlebars<'static>,
}

impl Templates {
    /// The built-in templates, each replaced by a file of the same name in
    /// `overrides` when given.
    pub fn load(overrides: Option<&Path>) -> Result<Self, Error> {
        let mut sources: BTreeMap<String, String> = TEMPLATES
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect();
        if let Some(dir) = overrides {
            let read_error = |source| Error::Read {
                path: dir.to_path_buf(),
                source,
            };
            for entry in fs::read_dir(dir).map_err(read_error)? {
                let path = entry.map_err(read_error)?.path();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !sources.contains_key(&name) {
                    return Err(Error::UnknownTemplate {
                        path,
                        name,
                        known: TEMPLATES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                let text = fs::read_to_string(&path).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
                sources.insert(name, text);
            }
        }
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_helper("yaml", Box::new(scalar_helper));
        registry.register_helper("toml", Box::new(scalar_helper));
        registry.register_helper("compose", Box::new(compose_helper));
        for (name, text) in sources {
            registry
                .register_template_string(&name, text)
                .map_err(|e| Error::Template {
                    name: name.clone(),
                    line: e.pos().map(|(line, _)| line),
                    column: e.pos().map(|(_, column)| column),
                    message: e.reason().to_string(),
                })?;
        }
        Ok(Self { registry })
    }

    fn render(&self, name: &str, data: &impl Serialize) -> Result<String, Error> {
        self.registry
            .render(name, data)
            .map_err(|e| Error::Template {
                name: e.template_name.clone().unwrap_or_else(|| name.to_string()),
                line: e.line_no,
                column: e.column_no,
                message: e.reason().to_string(),
            })
    }
}

/// What [`STACK_FILE`] holds: the planned stack as data, for plans and deploy
/// commits to compare without parsing the compose file back.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    generated_by: String,
    stack: Stack,
}

/// The stack recorded in a rendered tree; `None` when the tree has no
/// [`STACK_FILE`] (rendered by an older version, or not a render at all).
pub fn recorded_stack(tree: &Tree) -> Option<Result<Stack, serde_json::Error>> {
    tree.get(STACK_FILE).map(read_stack)
}

/// The stack in the bytes of a [`STACK_FILE`].
pub fn read_stack(bytes: &[u8]) -> Result<Stack, serde_json::Error> {
    serde_json::from_slice::<Manifest>(bytes).map(|manifest| manifest.stack)
}

/// An environment rendered: the stack (with config hashes) and every file.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub stack: Stack,
    pub tree: Tree,
}

/// Renders each environment, keeping it next to its render.
pub fn render_all(
    environments: Vec<Environment>,
    templates: &Templates,
) -> Result<Vec<(Environment, Rendered)>, Error> {
    environments
        .into_iter()
        .map(|env| {
            let rendered = render(&env, templates)?;
            Ok((env, rendered))
        })
        .collect()
}

/// Renders one environment. Pure: same environment, same bytes.
pub fn render(env: &Environment, templates: &Templates) -> Result<Rendered, Error> {
    let mut stack = Stack::build(env);
    let source = source_name(env);
    let header = format!(
        "# Generated by tracker-gitops from {source}. Do not edit: change the environment file and run `tracker-gitops render`."
    );

    let mut tree = Tree::default();
    let tracker_template = match env.config_schema() {
        ConfigSchema::V2 => "tracker-2.0.0.toml.hbs",
        ConfigSchema::V3 => "tracker-3.0.0.toml.hbs",
    };
    tree.insert(
        tracker::CONFIG_DIR.tree_path(tracker::CONFIG_FILE),
        templates.render(tracker_template, &context::TrackerConfig::new(&header, env))?,
    );
    // The data directory comes from git, the deploy user's, never from
    // Docker (root's, when it creates a missing bind-mount source): so the
    // next commit can hold files there, e.g. after a switch to SQLite.
    let keep = match env.file.tracker.core.database {
        // The SQLite file's directory must exist before the tracker starts.
        Database::Sqlite { .. } => "The tracker's SQLite database lives here, outside git.",
        // Made anyway by the tracker image's entry script, as root.
        Database::Mysql(_) => {
            "The tracker's data lives in MySQL; a SQLite database would live here."
        }
    };
    tree.insert(
        tracker::DATA_DIR.tree_path(&format!("{}/.keep", tracker::SQLITE_DIR)),
        format!("{header}\n# {keep}\n"),
    );
    if let Some(p) = &env.file.prometheus {
        tree.insert(
            prometheus::CONFIG_DIR.tree_path(prometheus::CONFIG_FILE),
            templates.render(
                "prometheus.yml.hbs",
                &context::PrometheusConfig::new(&header, env, p),
            )?,
        );
    }
    if env.file.grafana.is_some() {
        tree.insert(
            grafana::PROVISIONING_DIR.tree_path(grafana::DATASOURCES_FILE),
            templates.render(
                "grafana-datasources.yml.hbs",
                &context::GrafanaDatasources::new(&header),
            )?,
        );
        let dir = grafana::PROVISIONING_DIR;
        tree.insert(
            dir.tree_path(grafana::DASHBOARD_PROVIDER_FILE),
            templates.render(
                "grafana-dashboards.yml.hbs",
                &context::GrafanaDashboards::new(
                    &header,
                    dir.container_path(grafana::DASHBOARDS_DIR),
                ),
            )?,
        );
        for (name, json) in grafana::DASHBOARDS {
            tree.insert(
                dir.tree_path(&format!("{}/{name}", grafana::DASHBOARDS_DIR)),
                json,
            );
        }
    }
    if let Some(backup) = &env.file.backup {
        tree.insert(
            backup::CONFIG_DIR.tree_path(backup::SCRIPT_FILE),
            templates.render(
                "backup.sh.hbs",
                &context::BackupScript::new(&header, env, backup),
            )?,
        );
        // busybox crond runs each job with `sh -c`; its output goes to the
        // container's log.
        tree.insert(
            backup::CONFIG_DIR.tree_path(backup::CRONTAB_FILE),
            format!(
                "{header}\n{} /bin/sh {} take scheduled >/proc/1/fd/2 2>&1\n",
                backup.schedule,
                backup::script()
            ),
        );
    }
    if let (Some(https), Some(_)) = (&env.file.https, stack.service(caddy::SERVICE)) {
        tree.insert(
            caddy::CONFIG_DIR.tree_path(caddy::CONFIG_FILE),
            templates.render(
                "Caddyfile.hbs",
                &context::CaddyConfig::new(&header, env, https),
            )?,
        );
        if let Some(root) = &https.ca_root {
            tree.insert(
                caddy::CONFIG_DIR.tree_path(caddy::CA_ROOT_FILE),
                root.clone(),
            );
        }
    }
    for service in &mut stack.services {
        service.config_hash = tree.hash_under(service.bind_sources());
    }

    tree.insert(
        COMPOSE_FILE,
        templates.render(
            "docker-compose.yml.hbs",
            &context::Compose::new(&header, &stack),
        )?,
    );
    let manifest = Manifest {
        generated_by: header.trim_start_matches("# ").to_string(),
        stack: stack.clone(),
    };
    let mut manifest = serde_json::to_string_pretty(&manifest).expect("the stack serializes");
    manifest.push('\n');
    tree.insert(STACK_FILE, manifest);
    Ok(Rendered { stack, tree })
}

/// `environments/<name>.json`, from the last two components of the path, so the
/// header does not depend on where the checkout is.
fn source_name(env: &Environment) -> String {
    let mut parts: Vec<String> = env
        .path
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.reverse();
    // It lands in a comment line of every file: no line break may end it early.
    parts
        .join("/")
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A double-quoted string that is valid, and means the same, in YAML and TOML:
/// every control character (and the BOM) escaped, so no value can end the
/// string, the line or the file.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{FEFF}' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Compose interpolates `$` everywhere; literal text must double it.
fn compose_literal(text: &str) -> String {
    text.replace('$', "$$")
}

fn scalar(value: &Value, quote_string: impl Fn(&str) -> String) -> Result<String, RenderError> {
    match value {
        Value::String(s) => Ok(quote_string(s)),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(RenderErrorReason::Other(format!("cannot quote {other} as a scalar")).into()),
    }
}

fn param<'a>(h: &'a Helper, name: &'static str) -> Result<&'a Value, RenderError> {
    h.param(0)
        .map(|p| p.value())
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex(name, 0).into())
}

/// `{{yaml v}}` and `{{toml v}}`: one quoting serves both formats.
fn scalar_helper(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    out.write(&scalar(param(h, "value")?, quote)?)?;
    Ok(())
}

/// A YAML scalar for a compose file: literal `$` escaped; an environment value
/// (a list of parts) becomes text with `${NAME:?…}` for its secrets, so that
/// compose fails, naming the secret, when it is not set.
fn compose_helper(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let value = param(h, "compose")?;
    let text = match value {
        Value::Array(_) => {
            let parts: Vec<Part> = serde_json::from_value(value.clone())
                .map_err(|e| RenderErrorReason::Other(format!("not an environment value: {e}")))?;
            quote(
                &parts
                    .iter()
                    .map(|part| match part {
                        Part::Text(text) => compose_literal(text),
                        Part::Secret(name) => {
                            format!("${{{name}:?secret {name} is not set}}")
                        }
                        Part::SecretInUrl(name) => {
                            format!("${{{URL_ENCODED_PREFIX}{name}:?secret {name} is not set}}")
                        }
                    })
                    .collect::<String>(),
            )
        }
        other => scalar(other, |s| quote(&compose_literal(s)))?,
    };
    out.write(&text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_everything_that_could_break_out() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("x\ny: z"), r#""x\ny: z""#);
        assert_eq!(quote("\u{0}\u{7f}\u{85}"), r#""\u0000\u007F\u0085""#);
        assert_eq!(compose_literal("${HOME}"), "$${HOME}");
    }
}
