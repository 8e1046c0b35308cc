//! The upstream deployer's environment file (torrust-tracker-deployer's
//! `create environment` input), as `import` reads it: a schema of our own for
//! located diagnostics, then serde types built only from files that passed it.
//!
//! The upstream deployer ignores keys it does not know; the schema reports
//! them, and `import` turns those reports into warnings.

use serde::Deserialize;

use crate::environment::schema::Schema;

/// The schema text: our description of the upstream format.
const SCHEMA: &str = include_str!("upstream.schema.json");

/// The compiled schema.
pub fn schema() -> &'static Schema {
    static COMPILED: std::sync::OnceLock<Schema> = std::sync::OnceLock::new();
    COMPILED.get_or_init(|| Schema::embedded(SCHEMA))
}

/// Top-level keys only the upstream format has: a JSON object with one of
/// them is an upstream file, valid or not.
pub const MARKERS: [&str; 3] = ["environment", "ssh_credentials", "provider"];

/// Where the upstream file keeps secrets in plain text.
pub const SECRETS: [&str; 5] = [
    "/tracker/http_api/admin_token",
    "/tracker/core/database/password",
    "/tracker/core/database/root_password",
    "/grafana/admin_password",
    "/provider/api_token",
];

#[derive(Debug, Deserialize)]
pub struct File {
    pub environment: EnvironmentSection,
    pub ssh_credentials: SshCredentials,
    pub tracker: Tracker,
    pub prometheus: Option<Prometheus>,
    pub grafana: Option<Grafana>,
    pub https: Option<Https>,
    pub backup: Option<Backup>,
}

#[derive(Debug, Deserialize)]
pub struct EnvironmentSection {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SshCredentials {
    #[serde(default = "default_ssh_user")]
    pub username: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
}

#[derive(Debug, Deserialize)]
pub struct Tracker {
    pub core: Core,
    pub udp_trackers: Vec<UdpTracker>,
    pub http_trackers: Vec<Service>,
    pub http_api: HttpApi,
    pub health_check_api: Service,
}

#[derive(Debug, Deserialize)]
pub struct Core {
    pub private: bool,
    pub database: Database,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "driver")]
pub enum Database {
    #[serde(rename = "sqlite3")]
    Sqlite { database_name: String },
    #[serde(rename = "mysql")]
    Mysql {
        host: String,
        port: u16,
        database_name: String,
        username: String,
        password: String,
        root_password: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
pub struct UdpTracker {
    pub bind_address: String,
    pub domain: Option<String>,
}

/// An HTTP service the upstream deployer can put behind its TLS proxy.
#[derive(Debug, Deserialize)]
pub struct Service {
    pub bind_address: String,
    #[serde(flatten)]
    pub tls: Tls,
}

#[derive(Debug, Deserialize)]
pub struct HttpApi {
    pub bind_address: String,
    pub admin_token: String,
    #[serde(flatten)]
    pub tls: Tls,
}

/// A service's public name, and whether the proxy serves it with TLS.
#[derive(Debug, Default, Deserialize)]
pub struct Tls {
    pub domain: Option<String>,
    pub use_tls_proxy: Option<bool>,
}

impl Tls {
    /// The domain the service is served under with TLS, when it is.
    pub fn tls_domain(&self) -> Option<&str> {
        self.use_tls_proxy
            .unwrap_or(false)
            .then_some(self.domain.as_deref())
            .flatten()
    }
}

#[derive(Debug, Deserialize)]
pub struct Prometheus {
    pub scrape_interval_in_secs: u32,
}

#[derive(Debug, Deserialize)]
pub struct Grafana {
    pub admin_user: String,
    pub admin_password: String,
    #[serde(flatten)]
    pub tls: Tls,
}

#[derive(Debug, Deserialize)]
pub struct Https {
    pub admin_email: String,
    #[serde(default)]
    pub use_staging: bool,
}

#[derive(Debug, Deserialize)]
pub struct Backup {
    #[serde(default = "default_backup_schedule")]
    pub schedule: String,
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

// The upstream deployer's defaults for keys left out.
fn default_ssh_user() -> String {
    "torrust".into()
}
fn default_ssh_port() -> u16 {
    22
}
fn default_backup_schedule() -> String {
    "0 3 * * *".into()
}
fn default_retention_days() -> u32 {
    7
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Document;

    #[test]
    fn the_schema_compiles_and_types_a_valid_file() {
        let text = br#"{
  "environment": { "name": "x" },
  "ssh_credentials": { "private_key_path": "a", "public_key_path": "a.pub" },
  "provider": { "provider": "lxd", "profile_name": "p" },
  "tracker": {
    "core": { "private": false, "database": { "driver": "sqlite3", "database_name": "t.db" } },
    "udp_trackers": [], "http_trackers": [],
    "http_api": { "bind_address": "0.0.0.0:1212", "admin_token": "t" },
    "health_check_api": { "bind_address": "127.0.0.1:1313" }
  },
  "backup": {}
}"#;
        let document = Document::parse(text).unwrap();
        assert!(schema().validate(&document).diagnostics.is_empty());
        let file: File = serde_json::from_value(document.value).unwrap();
        assert_eq!(file.ssh_credentials.username, "torrust");
        assert_eq!(file.backup.unwrap().retention_days, 7);
    }

    #[test]
    fn tls_needs_a_domain() {
        let document = Document::parse(
            br#"{"environment": {"name": "x"}, "grafana": {"admin_user": "a", "admin_password": "b", "use_tls_proxy": true}}"#,
        )
        .unwrap();
        let found: Vec<_> = schema()
            .validate(&document)
            .diagnostics
            .into_iter()
            .map(|d| d.pointer)
            .collect();
        assert!(found.contains(&"/grafana/domain".to_string()), "{found:?}");
    }
}
