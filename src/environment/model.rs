//! The typed environment, built only from files that passed the schema.
//! Defaults live here, in the serde defaults; the schema's `default`s (for
//! editors) and `init.json` are tied to them by the tests below.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A reference to a secret: the name of the variable that holds it at deploy time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    pub secret: String,
}

impl Secret {
    pub fn name(&self) -> &str {
        &self.secret
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentFile {
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub tracker: Tracker,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<Prometheus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana: Option<Grafana>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<Https>,
    pub deploy: Deploy,
    /// The data losses this version accepts, by id (`database-driver:mysql->sqlite3`):
    /// deploy refuses any other, and an id that names no loss.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledge_data_loss: Vec<String>,
}

impl EnvironmentFile {
    /// Every secret reference, as (JSON pointer of its name, name), in file order.
    pub fn secret_references(&self) -> Vec<(&'static str, &str)> {
        let mut found = vec![(
            "/tracker/http_api/admin_token/secret",
            self.tracker.http_api.admin_token.name(),
        )];
        if let Database::Mysql(mysql) = &self.tracker.core.database {
            found.push((
                "/tracker/core/database/password/secret",
                mysql.password.name(),
            ));
            if let Some(root) = &mysql.root_password {
                found.push(("/tracker/core/database/root_password/secret", root.name()));
            }
        }
        if let Some(grafana) = &self.grafana {
            found.push((
                "/grafana/admin_password/secret",
                grafana.admin_password.name(),
            ));
        }
        found
    }
}

/// A service that a `domain` serves over HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsService {
    /// By its index in `tracker.http_trackers`.
    HttpTracker(usize),
    HttpApi,
    HealthCheckApi,
    Grafana,
}

impl TlsService {
    /// The JSON pointer of its `domain`.
    pub fn domain_pointer(self) -> String {
        match self {
            TlsService::HttpTracker(i) => format!("/tracker/http_trackers/{i}/domain"),
            TlsService::HttpApi => "/tracker/http_api/domain".into(),
            TlsService::HealthCheckApi => "/tracker/health_check_api/domain".into(),
            TlsService::Grafana => "/grafana/domain".into(),
        }
    }

    /// What a person calls it, in the middle of a sentence.
    pub fn label(self) -> String {
        match self {
            TlsService::HttpTracker(i) => format!("HTTP tracker {i}"),
            TlsService::HttpApi => "the REST API".into(),
            TlsService::HealthCheckApi => "the health-check API".into(),
            TlsService::Grafana => "Grafana".into(),
        }
    }
}

impl EnvironmentFile {
    /// Whether `domain` puts a service behind Caddy: HTTPS is on.
    pub fn behind_tls(&self, domain: &Option<String>) -> bool {
        domain.is_some() && self.https.is_some()
    }

    /// Every service with a `domain`, in file order, with its domain.
    pub fn domains(&self) -> Vec<(TlsService, &str)> {
        let tracker = &self.tracker;
        let trackers = tracker.http_trackers.iter().enumerate();
        let mut found: Vec<(TlsService, &str)> = trackers
            .filter_map(|(i, l)| Some((TlsService::HttpTracker(i), l.domain.as_deref()?)))
            .collect();
        let others = [
            (TlsService::HttpApi, tracker.http_api.domain.as_deref()),
            (
                TlsService::HealthCheckApi,
                tracker.health_check_api.domain.as_deref(),
            ),
            (
                TlsService::Grafana,
                self.grafana.as_ref().and_then(|g| g.domain.as_deref()),
            ),
        ];
        found.extend(others.into_iter().filter_map(|(s, d)| Some((s, d?))));
        found
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigSchema {
    #[serde(rename = "2.0.0")]
    V2,
    #[serde(rename = "3.0.0")]
    V3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracker {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<ConfigSchema>,
    #[serde(default = "default_log_level")]
    pub log_level: LogLevel,
    pub core: Core,
    #[serde(default)]
    pub udp_trackers: Vec<Listener>,
    #[serde(default)]
    pub http_trackers: Vec<HttpTracker>,
    pub http_api: HttpApi,
    #[serde(default)]
    pub health_check_api: HealthCheckApi,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Core {
    pub private: bool,
    pub listed: bool,
    #[serde(default)]
    pub announce_policy: AnnouncePolicy,
    #[serde(default)]
    pub tracker_policy: TrackerPolicy,
    pub database: Database,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerPolicy {
    /// Completed counts in the database: without it the database holds only
    /// keys and the whitelist, and torrents start from zero after a restart.
    #[serde(default)]
    pub persistent_torrent_completed_stat: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnouncePolicy {
    #[serde(default = "default_interval")]
    pub interval: u32,
    #[serde(default = "default_interval")]
    pub interval_min: u32,
}

impl Default for AnnouncePolicy {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            interval_min: default_interval(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "driver", deny_unknown_fields)]
pub enum Database {
    #[serde(rename = "sqlite3")]
    Sqlite {
        #[serde(default = "default_sqlite_name")]
        database_name: String,
    },
    #[serde(rename = "mysql")]
    Mysql(Mysql),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mysql {
    #[serde(default = "default_mysql_host")]
    pub host: String,
    #[serde(default = "default_mysql_port")]
    pub port: u16,
    pub database_name: String,
    pub user: String,
    pub password: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Mysql {
    /// The stack runs its own MySQL when the host is the service name.
    pub fn bundled(&self) -> bool {
        self.host == default_mysql_host()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub bind_address: SocketAddr,
}

/// An HTTP tracker: a listener that can be served over HTTPS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTracker {
    pub bind_address: SocketAddr,
    /// Served at `https://<domain>/announce` through Caddy; its port is then
    /// not published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpApi {
    pub bind_address: SocketAddr,
    pub admin_token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckApi {
    pub bind_address: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

impl Default for HealthCheckApi {
    fn default() -> Self {
        Self {
            bind_address: SocketAddr::from(([127, 0, 0, 1], 1313)),
            domain: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prometheus {
    #[serde(default = "default_prometheus_image")]
    pub image: String,
    #[serde(default = "default_scrape_interval")]
    pub scrape_interval: u32,
    #[serde(default = "default_prometheus_publish")]
    pub publish: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    #[serde(default = "yes")]
    pub persist_data: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grafana {
    #[serde(default = "default_grafana_image")]
    pub image: String,
    #[serde(default = "default_grafana_user")]
    pub admin_user: String,
    pub admin_password: Secret,
    /// On the host; not published when Grafana is served over HTTPS.
    #[serde(default = "default_grafana_publish")]
    pub publish: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// Online backups of the tracker's database, taken by the stack on the VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// Five cron fields, UTC.
    pub schedule: String,
    #[serde(default = "default_backup_keep")]
    pub keep: u32,
    pub path: String,
    #[serde(default = "default_backup_image")]
    pub image: String,
}

/// HTTPS through Caddy, with certificates from an ACME CA, for the services
/// that have a `domain`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Https {
    /// The ACME account's contact: the CA writes about expiring certificates.
    pub email: String,
    #[serde(default = "default_ca")]
    pub ca: String,
    /// PEM certificate of the root that signs a private ACME server's own
    /// HTTPS certificate (public CAs need none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_root: Option<String>,
    #[serde(default = "default_caddy_image")]
    pub image: String,
}

/// The CAs known by name, with their ACME directories.
pub const KNOWN_CAS: [(&str, &str); 2] = [
    (
        "letsencrypt",
        "https://acme-v02.api.letsencrypt.org/directory",
    ),
    (
        "letsencrypt-staging",
        "https://acme-staging-v02.api.letsencrypt.org/directory",
    ),
];

impl Https {
    /// The ACME directory URL of [`Https::ca`].
    pub fn directory(&self) -> &str {
        KNOWN_CAS
            .iter()
            .find(|(name, _)| *name == self.ca)
            .map_or(&self.ca, |(_, url)| url)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub user: String,
    pub host_key: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

impl Deploy {
    /// The deploy branch of the environment `name`: its own, else `<prefix><name>`.
    pub fn branch_of(&self, name: &str, prefix: &str) -> String {
        match &self.branch {
            Some(branch) => branch.clone(),
            None => format!("{prefix}{name}"),
        }
    }
}

pub const DEFAULT_MYSQL_IMAGE: &str = "mysql:8.4";

fn default_log_level() -> LogLevel {
    LogLevel::Info
}
fn default_interval() -> u32 {
    120
}
fn default_sqlite_name() -> String {
    "sqlite3.db".into()
}
fn default_mysql_host() -> String {
    "mysql".into()
}
fn default_mysql_port() -> u16 {
    3306
}
pub(crate) fn default_prometheus_image() -> String {
    "prom/prometheus:v3.0.1".into()
}
fn default_scrape_interval() -> u32 {
    15
}
pub(crate) fn default_prometheus_publish() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
pub(crate) fn default_grafana_image() -> String {
    "grafana/grafana:11.4.0".into()
}
fn default_grafana_user() -> String {
    "admin".into()
}
pub(crate) fn default_grafana_publish() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3000))
}
fn default_backup_keep() -> u32 {
    7
}
pub(crate) fn default_backup_image() -> String {
    "ghcr.io/tracker-gitops/backup:1".into()
}
pub(crate) fn default_ca() -> String {
    KNOWN_CAS[0].0.into()
}
pub(crate) fn default_caddy_image() -> String {
    "caddy:2.8.4".into()
}
fn default_ssh_port() -> u16 {
    22
}
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use serde_json::{Value, json};

    use super::*;
    use crate::environment::{check_bytes, schema::SCHEMA, template};

    /// Defaults the stack applies rather than serde, because the model keeps
    /// the key's absence: an external MySQL server takes no image.
    fn applied_later(pointer: &str) -> Option<Value> {
        (pointer == "/tracker/core/database/image").then(|| json!(DEFAULT_MYSQL_IMAGE))
    }

    /// A walk of the schema over one environment file: `written` is the file,
    /// `typed` the model's view of it (serialized, defaults filled in).
    struct Walk {
        schema: Value,
        /// Schema locations of the `default`s compared with the model.
        compared: BTreeSet<String>,
    }

    impl Walk {
        fn new() -> Self {
            Self {
                schema: serde_json::from_str(SCHEMA).unwrap(),
                compared: BTreeSet::new(),
            }
        }

        fn file(&mut self, text: &str) {
            let checked = check_bytes(Path::new("environments/x.json"), text.as_bytes());
            let environment = checked
                .environment
                .unwrap_or_else(|| panic!("{text} is invalid: {:#?}", checked.report.diagnostics));
            let written: Value = serde_json::from_str(text).unwrap();
            let typed = serde_json::to_value(&environment.file).unwrap();
            let root = self.schema.clone();
            self.node("", &root, "", Some(&written), &typed);
        }

        /// `at` locates `node` in the schema, `pointer` the value in the file.
        fn node(
            &mut self,
            at: &str,
            node: &Value,
            pointer: &str,
            written: Option<&Value>,
            typed: &Value,
        ) {
            let (at, node) = match node.get("$ref").and_then(Value::as_str) {
                Some(target) => {
                    let target = target.trim_start_matches('#').to_string();
                    let node = self.schema.pointer(&target).unwrap().clone();
                    return self.node(&target, &node, pointer, written, typed);
                }
                None => (at, node),
            };
            for (i, branch) in node["allOf"].as_array().into_iter().flatten().enumerate() {
                if jsonschema::is_valid(&branch["if"], typed) {
                    let at = format!("{at}/allOf/{i}/then");
                    self.node(&at, &branch["then"], pointer, written, typed);
                }
            }
            if let (Some(items), Some(list)) = (node.get("items"), typed.as_array()) {
                for (i, item) in list.iter().enumerate() {
                    let written = written.and_then(|w| w.get(i));
                    let pointer = format!("{pointer}/{i}");
                    self.node(&format!("{at}/items"), items, &pointer, written, item);
                }
            }
            for (key, property) in node["properties"].as_object().into_iter().flatten() {
                let at = format!("{at}/properties/{key}");
                let pointer = format!("{pointer}/{key}");
                let written = written.and_then(|w| w.get(key));
                let value = typed.get(key).cloned().or_else(|| applied_later(&pointer));
                match (property.get("default"), written, &value) {
                    (Some(default), Some(written), _) => assert_eq!(
                        written, default,
                        "{pointer} is written as {written}, its default is {default}"
                    ),
                    (Some(default), None, value) => {
                        assert_eq!(
                            value.as_ref(),
                            Some(default),
                            "{pointer}: the schema's default is {default}, the model's {value:?}"
                        );
                        self.compared.insert(at.clone());
                    }
                    (None, None, Some(value)) if !value.is_object() && !value.is_array() => {
                        panic!("{pointer}: the model fills in {value}, the schema has no default")
                    }
                    _ => {}
                }
                if let Some(typed) = typed.get(key) {
                    self.node(&at, property, &pointer, written, typed);
                }
            }
        }
    }

    /// Schema locations of every `default`.
    fn defaults_in(node: &Value, at: &str, found: &mut BTreeSet<String>) {
        match node {
            Value::Object(map) => {
                if map.contains_key("default") {
                    found.insert(at.to_string());
                }
                for (key, child) in map {
                    defaults_in(child, &format!("{at}/{key}"), found);
                }
            }
            Value::Array(list) => {
                for (i, child) in list.iter().enumerate() {
                    defaults_in(child, &format!("{at}/{i}"), found);
                }
            }
            _ => {}
        }
    }

    /// Every optional section present, every key with a default left out.
    const LEAVES_OUT_DEFAULTS: [&str; 2] = [
        r#"{
  "tracker": {
    "image": "torrust/tracker:develop",
    "core": { "private": false, "listed": false, "database": { "driver": "sqlite3" } },
    "http_api": {
      "bind_address": "0.0.0.0:1212", "admin_token": { "secret": "TOKEN" },
      "domain": "tracker.example.org"
    }
  },
  "prometheus": {},
  "grafana": { "admin_password": { "secret": "GRAFANA" } },
  "backup": { "schedule": "17 3 * * *", "path": "/srv/backups" },
  "https": { "email": "ops@example.org" },
  "deploy": { "host": "h", "user": "u", "host_key": "ssh-ed25519 AAAA", "path": "/srv/x" }
}"#,
        r#"{
  "tracker": {
    "image": "torrust/tracker:develop",
    "core": {
      "private": true,
      "listed": true,
      "announce_policy": {},
      "tracker_policy": {},
      "database": {
        "driver": "mysql", "database_name": "torrust", "user": "torrust",
        "password": { "secret": "MYSQL_PASSWORD" }
      }
    },
    "udp_trackers": [{ "bind_address": "0.0.0.0:6969" }],
    "http_api": { "bind_address": "0.0.0.0:1212", "admin_token": { "secret": "TOKEN" } }
  },
  "deploy": { "host": "h", "user": "u", "host_key": "ssh-ed25519 AAAA", "path": "/srv/x" }
}"#,
    ];

    #[test]
    fn the_schema_states_the_models_defaults() {
        let mut walk = Walk::new();
        for text in LEAVES_OUT_DEFAULTS {
            walk.file(text);
        }
        let mut defaults = BTreeSet::new();
        defaults_in(&walk.schema, "", &mut defaults);
        assert!(defaults.len() >= 15, "{defaults:?}");
        assert_eq!(walk.compared, defaults, "every schema default is compared");
    }

    #[test]
    fn init_writes_the_defaults_or_leaves_them_out() {
        Walk::new().file(&template("edge", "../schema/environment.schema.json"));
    }
}
