//! What each template is given: one struct per template. The field names are
//! a contract with users' own templates (`render --templates`, described in
//! the README): add fields, never rename or remove one.

use std::net::SocketAddr;

use serde::Serialize;

use crate::environment::{Backup, Database, Environment, Https, LogLevel, Prometheus};
use crate::stack::{CONFIG_HASH_LABEL, Stack, backup, caddy, prometheus, tracker};

/// `docker-compose.yml.hbs`.
#[derive(Serialize)]
pub(super) struct Compose<'a> {
    /// The comment line every file starts with.
    header: &'a str,
    /// The label carrying each service's config hash.
    hash_label: &'static str,
    stack: &'a Stack,
}

impl<'a> Compose<'a> {
    pub(super) fn new(header: &'a str, stack: &'a Stack) -> Self {
        Self {
            header,
            hash_label: CONFIG_HASH_LABEL,
            stack,
        }
    }
}

/// `tracker-2.0.0.toml.hbs` and `tracker-3.0.0.toml.hbs`.
#[derive(Serialize)]
pub(super) struct TrackerConfig<'a> {
    header: &'a str,
    tracker: Tracker<'a>,
}

#[derive(Serialize)]
struct Tracker<'a> {
    log_level: LogLevel,
    listed: bool,
    private: bool,
    interval: u32,
    interval_min: u32,
    /// Completed counts kept in the database.
    persistent_torrent_completed_stat: bool,
    database: TrackerDatabase<'a>,
    /// Listener addresses inside the container (`0.0.0.0:<port>`).
    udp: Vec<SocketAddr>,
    http: Vec<SocketAddr>,
    /// The HTTP trackers again, each with whether it is behind Caddy.
    http_trackers: Vec<HttpTracker>,
    /// Whether any HTTP tracker is behind Caddy (schema 2.0.0 has one setting for all).
    on_reverse_proxy: bool,
    api: SocketAddr,
    /// As configured (the health-check API is never published), but on every
    /// interface of the container when Caddy serves it.
    health: SocketAddr,
}

#[derive(Serialize)]
struct HttpTracker {
    /// Inside the container (`0.0.0.0:<port>`).
    bind_address: SocketAddr,
    /// Its clients' addresses come in Caddy's `X-Forwarded-For` header.
    on_reverse_proxy: bool,
}

#[derive(Serialize)]
struct TrackerDatabase<'a> {
    /// `sqlite3` or `mysql`.
    driver: &'static str,
    /// The SQLite file inside the container; null for MySQL.
    path: Option<String>,
    /// Only for MySQL.
    #[serde(flatten)]
    server: Option<MysqlServer<'a>>,
}

#[derive(Serialize)]
struct MysqlServer<'a> {
    host: &'a str,
    port: u16,
    user: &'a str,
    name: &'a str,
}

impl<'a> TrackerConfig<'a> {
    pub(super) fn new(header: &'a str, env: &'a Environment) -> Self {
        let config = &env.file.tracker;
        // Published listeners bind every interface inside the container; the
        // host side of the port mapping decides where they are reachable.
        let inside = |address: SocketAddr| SocketAddr::from(([0, 0, 0, 0], address.port()));
        let database = &config.core.database;
        let (path, server) = match database {
            Database::Sqlite { database_name } => (
                Some(
                    tracker::DATA_DIR
                        .container_path(&format!("{}/{database_name}", tracker::SQLITE_DIR)),
                ),
                None,
            ),
            Database::Mysql(mysql) => (
                None,
                Some(MysqlServer {
                    host: &mysql.host,
                    port: mysql.port,
                    user: &mysql.user,
                    name: &mysql.database_name,
                }),
            ),
        };
        Self {
            header,
            tracker: Tracker {
                log_level: config.log_level,
                listed: config.core.listed,
                private: config.core.private,
                interval: config.core.announce_policy.interval,
                interval_min: config.core.announce_policy.interval_min,
                persistent_torrent_completed_stat: config
                    .core
                    .tracker_policy
                    .persistent_torrent_completed_stat,
                database: TrackerDatabase {
                    driver: tracker::driver(database),
                    path,
                    server,
                },
                udp: config
                    .udp_trackers
                    .iter()
                    .map(|l| inside(l.bind_address))
                    .collect(),
                http: config
                    .http_trackers
                    .iter()
                    .map(|l| inside(l.bind_address))
                    .collect(),
                http_trackers: config
                    .http_trackers
                    .iter()
                    .map(|l| HttpTracker {
                        bind_address: inside(l.bind_address),
                        on_reverse_proxy: env.file.behind_tls(&l.domain),
                    })
                    .collect(),
                on_reverse_proxy: config
                    .http_trackers
                    .iter()
                    .any(|l| env.file.behind_tls(&l.domain)),
                api: inside(config.http_api.bind_address),
                health: if env.file.behind_tls(&config.health_check_api.domain) {
                    inside(config.health_check_api.bind_address)
                } else {
                    config.health_check_api.bind_address
                },
            },
        }
    }
}

/// `prometheus.yml.hbs`.
#[derive(Serialize)]
pub(super) struct PrometheusConfig<'a> {
    header: &'a str,
    prometheus: PrometheusScrape,
}

#[derive(Serialize)]
struct PrometheusScrape {
    /// Seconds.
    scrape_interval: u32,
    /// The tracker's API, `tracker:<port>`.
    target: String,
    /// The admin token's secret file.
    token_file: String,
}

impl<'a> PrometheusConfig<'a> {
    pub(super) fn new(header: &'a str, env: &Environment, prometheus: &Prometheus) -> Self {
        Self {
            header,
            prometheus: PrometheusScrape {
                scrape_interval: prometheus.scrape_interval,
                target: format!(
                    "{}:{}",
                    tracker::SERVICE,
                    env.file.tracker.http_api.bind_address.port()
                ),
                token_file: prometheus::token_file(),
            },
        }
    }
}

/// `grafana-datasources.yml.hbs`.
#[derive(Serialize)]
pub(super) struct GrafanaDatasources<'a> {
    header: &'a str,
}

impl<'a> GrafanaDatasources<'a> {
    pub(super) fn new(header: &'a str) -> Self {
        Self { header }
    }
}

/// `grafana-dashboards.yml.hbs`.
#[derive(Serialize)]
pub(super) struct GrafanaDashboards<'a> {
    header: &'a str,
    /// The dashboards' directory inside the container.
    path: String,
}

impl<'a> GrafanaDashboards<'a> {
    pub(super) fn new(header: &'a str, path: String) -> Self {
        Self { header, path }
    }
}

/// `backup.sh.hbs`.
#[derive(Serialize)]
pub(super) struct BackupScript<'a> {
    header: &'a str,
    backup: BackupSettings<'a>,
}

#[derive(Serialize)]
struct BackupSettings<'a> {
    /// `sqlite3` or `mysql`.
    driver: &'static str,
    keep: u32,
    /// Inside the container: the backups, the checkout (read-only), crond's directory.
    backups: &'static str,
    checkout: &'static str,
    crontabs: String,
    /// The SQLite file; null for MySQL.
    sqlite: Option<String>,
    /// Only for MySQL.
    mysql: Option<BackupMysql<'a>>,
}

#[derive(Serialize)]
struct BackupMysql<'a> {
    host: &'a str,
    port: u16,
    database: &'a str,
    /// The root password's secret file.
    password_file: String,
}

impl<'a> BackupScript<'a> {
    pub(super) fn new(header: &'a str, env: &'a Environment, settings: &Backup) -> Self {
        let database = &env.file.tracker.core.database;
        let (sqlite, mysql) = match database {
            Database::Sqlite { database_name } => (Some(backup::sqlite_path(database_name)), None),
            Database::Mysql(mysql) => (
                None,
                Some(BackupMysql {
                    host: &mysql.host,
                    port: mysql.port,
                    database: &mysql.database_name,
                    password_file: backup::root_password_file(),
                }),
            ),
        };
        Self {
            header,
            backup: BackupSettings {
                driver: tracker::driver(database),
                keep: settings.keep,
                backups: backup::BACKUPS,
                checkout: backup::CHECKOUT,
                crontabs: backup::CONFIG_DIR.container_path(backup::CRONTAB_DIR),
                sqlite,
                mysql,
            },
        }
    }
}

/// `Caddyfile.hbs`.
#[derive(Serialize)]
pub(super) struct CaddyConfig<'a> {
    header: &'a str,
    caddy: Caddy<'a>,
}

#[derive(Serialize)]
struct Caddy<'a> {
    /// The ACME account's e-mail.
    email: &'a str,
    /// The ACME directory URL.
    ca: &'a str,
    /// The private CA root's path in the container, if any.
    ca_root: Option<String>,
    sites: Vec<caddy::Site>,
    /// The loopback port of the healthcheck's plain-HTTP site.
    health_port: u16,
}

impl<'a> CaddyConfig<'a> {
    pub(super) fn new(header: &'a str, env: &Environment, https: &'a Https) -> Self {
        Self {
            header,
            caddy: Caddy {
                email: &https.email,
                ca: https.directory(),
                ca_root: https
                    .ca_root
                    .as_ref()
                    .map(|_| caddy::CONFIG_DIR.container_path(caddy::CA_ROOT_FILE)),
                sites: caddy::sites(env),
                health_port: caddy::HEALTH_PORT,
            },
        }
    }
}
