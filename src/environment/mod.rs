//! Environment files: reading, strict parsing, the schema, cross-field rules, and
//! the typed model everything downstream works from.

mod cron;
mod document;
pub mod image;
mod model;
pub mod placeholder;
mod rules;
pub mod schema;
mod set;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use document::Document;
pub use model::*;
pub use rules::check_name;
pub use rules::{RESERVED_NAMES, RESERVED_PREFIXES};
pub use set::{Namespace, NamespaceError};

use crate::diagnostic::{Code, Diagnostic, FileReport, display_path, display_text};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", display_path(.path))]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot list environments in {}: {source}", display_path(.dir))]
    List { dir: PathBuf, source: io::Error },
    #[error("no environment files (*.json) in {}", display_path(.dir))]
    NoEnvironments { dir: PathBuf },
    #[error(
        "no environment named `{}` in {}{}",
        display_text(.name),
        display_path(.dir),
        unknown_hint(.suggestion.as_deref(), .known)
    )]
    UnknownEnvironment {
        name: String,
        dir: PathBuf,
        /// The existing environment the name is closest to, if it looks like a typo.
        suggestion: Option<String>,
        /// The environments there are.
        known: Vec<String>,
    },
    #[error(
        "{} is not configured yet: {} still {}; set {} to your VM's \
         (README: Preparing a VM)",
        display_path(.path),
        .settings.join(" and "),
        if .settings.len() == 1 { "holds a placeholder" } else { "hold placeholders" },
        if .settings.len() == 1 { "it" } else { "them" }
    )]
    NotConfigured {
        path: PathBuf,
        settings: Vec<String>,
    },
    #[error("{} already exists; refusing to overwrite it", display_path(.path))]
    Exists { path: PathBuf },
    #[error("cannot write {}: {source}", display_path(.path))]
    Write { path: PathBuf, source: io::Error },
}

/// A valid environment: its name (the file stem), where it came from, and its content.
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    /// The file as the user named it, for messages and provenance.
    pub path: PathBuf,
    pub file: EnvironmentFile,
}

impl Environment {
    /// The tracker configuration schema: stated, or known from the image tag.
    pub fn config_schema(&self) -> ConfigSchema {
        self.file
            .tracker
            .config_schema
            .or_else(|| {
                image::tracker_image_facts(&self.file.tracker.image).map(|f| f.config_schema)
            })
            .unwrap_or(ConfigSchema::V3)
    }

    /// The deploy branch: the environment's own, else `<prefix><name>`.
    pub fn deploy_branch(&self, prefix: &str) -> String {
        self.file.deploy.branch_of(&self.name, prefix)
    }

    /// Refuses an environment whose VM settings are still placeholders:
    /// nothing can be deployed to, or asked of, a VM nobody named.
    pub fn configured(&self) -> Result<(), Error> {
        let placeholders = placeholder::in_deploy(&self.file.deploy);
        if placeholders.is_empty() {
            return Ok(());
        }
        Err(Error::NotConfigured {
            path: self.path.clone(),
            settings: placeholders
                .iter()
                .map(|p| p.pointer.trim_start_matches('/').replace('/', "."))
                .collect(),
        })
    }

    /// Every secret the stack needs at deploy time, in a stable order, once each.
    pub fn secrets(&self) -> Vec<&str> {
        let mut seen = std::collections::BTreeSet::new();
        self.file
            .secret_references()
            .into_iter()
            .map(|(_, name)| name)
            .filter(|name| seen.insert(*name))
            .collect()
    }
}

/// The outcome of checking one file: its diagnostics, and the environment when
/// there were no errors (warnings allowed).
#[derive(Debug)]
pub struct Checked {
    pub report: FileReport,
    pub environment: Option<Environment>,
    /// What the rules across files need, whenever the file could be typed
    /// (even with errors, so that one run reports every problem).
    deploy: Option<DeploySection>,
}

/// A file's `deploy` section, with the positions of everything in the file.
#[derive(Debug)]
struct DeploySection {
    name: String,
    deploy: Deploy,
    document: Document,
}

/// Checks the file at `path`. Only failing to read it is an `Err`.
pub fn check_file(path: &Path) -> Result<Checked, Error> {
    let bytes = fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(check_bytes(path, &bytes))
}

/// Checks an environment file's content; `path` names it (its stem is the name).
pub fn check_bytes(path: &Path, bytes: &[u8]) -> Checked {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let display = path.display().to_string();
    let text = String::from_utf8_lossy(bytes).into_owned();
    let mut diagnostics: Vec<Diagnostic> = rules::check_name(&name).into_iter().collect();

    let document = match Document::parse(bytes) {
        Ok(document) => document,
        Err(found) => {
            diagnostics.extend(found);
            return Checked {
                report: FileReport::new(display, text, diagnostics),
                environment: None,
                deploy: None,
            };
        }
    };
    let schema = schema::validate(&document);
    let addresses = rules::bad_addresses(&document);
    // Unknown keys alone do not stop the cross-field rules: every problem in one run.
    let typed = (schema.only_unknown_keys() && addresses.is_empty()).then(|| {
        let mut value = document.value.clone();
        for pointer in &schema.unknown_keys {
            remove(&mut value, pointer);
        }
        serde_json::from_value::<EnvironmentFile>(value)
    });
    let clean = schema.diagnostics.is_empty();
    diagnostics.extend(schema.diagnostics);
    diagnostics.extend(addresses);
    let mut environment = None;
    let mut deploy = None;
    match typed {
        Some(Ok(file)) => {
            diagnostics.extend(rules::apply(&file, &document));
            deploy = Some(file.deploy.clone());
            if clean {
                environment = Some(Environment {
                    name: name.clone(),
                    path: path.to_path_buf(),
                    file,
                });
            }
        }
        // The schema and the model agree, so this is a bug; report it, don't panic.
        Some(Err(e)) => diagnostics.push(Diagnostic::error(
            Code::InternalError,
            "",
            0..0,
            format!("internal error: {e}"),
        )),
        None => {}
    }
    let report = FileReport::new(display, text, diagnostics);
    if report.has_errors() {
        environment = None;
    }
    Checked {
        report,
        environment,
        deploy: deploy.map(|deploy| DeploySection {
            name,
            deploy,
            document,
        }),
    }
}

/// Checks `files` one by one, then as one set (the rules across files).
pub fn check_files(files: &[PathBuf], namespace: &Namespace) -> Result<Vec<Checked>, Error> {
    let mut checked = files
        .iter()
        .map(|path| check_file(path))
        .collect::<Result<Vec<_>, _>>()?;
    set::check_set(&mut checked, namespace);
    Ok(checked)
}

/// Checks the named environments of `dir` (all when `names` is empty) against
/// every environment there: a file is never valid alone when it collides with
/// another. Only the named ones are returned.
pub fn check_selected(
    dir: &Path,
    names: &[String],
    namespace: &Namespace,
) -> Result<Vec<Checked>, Error> {
    if names.is_empty() {
        return check_files(&discover(dir)?, namespace);
    }
    let selected = select(dir, names)?;
    let all = discover(dir)?;
    let mut checked: HashMap<PathBuf, Checked> = all
        .iter()
        .cloned()
        .zip(check_files(&all, namespace)?)
        .collect();
    Ok(selected
        .iter()
        .filter_map(|path| checked.remove(path))
        .collect())
}

/// Removes the member at `pointer` (an object key) from `value`.
fn remove(value: &mut serde_json::Value, pointer: &str) {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = key.replace("~1", "/").replace("~0", "~");
    if let Some(object) = value.pointer_mut(parent).and_then(|v| v.as_object_mut()) {
        object.remove(&key);
    }
}

/// The environment files in `dir`: every `*.json`, sorted by name.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let list_error = |source| Error::List {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_error)? {
        let path = entry.map_err(list_error)?.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(Error::NoEnvironments {
            dir: dir.to_path_buf(),
        });
    }
    files.sort();
    Ok(files)
}

/// The files for the named environments, or all of them when `names` is empty.
pub fn select(dir: &Path, names: &[String]) -> Result<Vec<PathBuf>, Error> {
    if names.is_empty() {
        return discover(dir);
    }
    names
        .iter()
        .map(|name| {
            let path = dir.join(format!("{name}.json"));
            if path.is_file() {
                return Ok(path);
            }
            let known: Vec<String> = discover(dir)
                .unwrap_or_default()
                .iter()
                .filter_map(|path| Some(path.file_stem()?.to_string_lossy().into_owned()))
                .collect();
            Err(Error::UnknownEnvironment {
                name: name.clone(),
                dir: dir.to_path_buf(),
                // `--env staging.json` means `staging`.
                suggestion: schema::closest(name.strip_suffix(".json").unwrap_or(name), &known),
                known,
            })
        })
        .collect()
}

/// What follows an unknown environment's name: the likely one, and the list.
fn unknown_hint(suggestion: Option<&str>, known: &[String]) -> String {
    let mut hint = String::new();
    if let Some(suggestion) = suggestion {
        hint.push_str(&format!("; did you mean `{}`?", display_text(suggestion)));
    }
    if known.is_empty() {
        hint.push_str(" (it holds none: `tracker-gitops init NAME` writes one)");
    } else {
        let names: Vec<String> = known.iter().map(|name| display_text(name)).collect();
        hint.push_str(&format!(" (environments: {})", names.join(", ")));
    }
    hint
}

/// A complete, working environment file with every default written out.
pub fn template(name: &str, schema_path: &str) -> String {
    let text = include_str!("init.json")
        .replace("@SCHEMA@", schema_path)
        .replace("@NAME@", name);
    debug_assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
    text
}

/// Where `$schema` points, relative to the environment file: editors resolve
/// it there, so `init` keeps a copy of the schema at that place.
pub const SCHEMA_REFERENCE: &str = "../schema/environment.schema.json";

/// What `init` wrote.
#[derive(Debug)]
pub struct Initialized {
    /// The new environment file.
    pub file: PathBuf,
    /// The schema copy its `$schema` points to.
    pub schema: PathBuf,
    /// Whether the schema copy was written (false: it was already current).
    pub schema_written: bool,
}

/// Writes `dir/NAME.json` from the template, never overwriting it, and the
/// schema copy its `$schema` points to.
pub fn init(dir: &Path, name: &str) -> Result<Initialized, Error> {
    let path = dir.join(format!("{name}.json"));
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    let schema_path = crate::project::normalize(&dir.join(SCHEMA_REFERENCE));
    let schema_dir = schema_path.parent().unwrap_or(dir);
    fs::create_dir_all(dir).map_err(write_error(dir))?;
    fs::create_dir_all(schema_dir).map_err(write_error(schema_dir))?;
    crate::project::create_new(&path, template(name, SCHEMA_REFERENCE).as_bytes()).map_err(
        |source| match source.kind() {
            io::ErrorKind::AlreadyExists => Error::Exists { path: path.clone() },
            _ => write_error(&path)(source),
        },
    )?;
    let schema_written = fs::read(&schema_path).ok().as_deref() != Some(schema::SCHEMA.as_bytes());
    if schema_written {
        fs::write(&schema_path, schema::SCHEMA).map_err(write_error(&schema_path))?;
    }
    Ok(Initialized {
        file: path,
        schema: schema_path,
        schema_written,
    })
}

/// A minimal valid environment for unit tests; `extra` adds top-level sections
/// (each followed by a comma).
#[cfg(test)]
pub fn test_environment(extra: &str) -> Environment {
    let json = format!(
        r#"{{
  "tracker": {{
    "image": "torrust/tracker:develop",
    "core": {{ "private": false, "listed": false, "database": {{ "driver": "sqlite3" }} }},
    "udp_trackers": [{{ "bind_address": "0.0.0.0:6969" }}],
    "http_api": {{ "bind_address": "127.0.0.1:1212", "admin_token": {{ "secret": "TOKEN" }} }}
  }},
  {extra}
  "deploy": {{ "host": "h", "user": "u", "host_key": "ssh-ed25519 AAAA", "path": "/srv/x" }}
}}"#
    );
    check_bytes(Path::new("environments/test.json"), json.as_bytes())
        .environment
        .expect("the test environment is valid")
}
