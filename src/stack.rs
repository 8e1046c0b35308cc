//! What runs on the VM, decided once from an environment: services, what they
//! publish and mount, how they depend on each other. A pure function; the
//! templates only lay this out, and plans and deploy commits compare it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::environment::{ConfigSchema, Database, Environment};

/// Container paths fixed by the images.
pub const TRACKER_CONFIG_DIR: &str = "/etc/torrust/tracker";
pub const TRACKER_CONFIG_FILE: &str = "/etc/torrust/tracker/tracker.toml";
pub const TRACKER_DATA_DIR: &str = "/var/lib/torrust/tracker";
/// The bind-mount sources (relative to the compose file) the tracker writes
/// to: its database and logs. On the VM they are inside the checkout but not
/// in the commit; a deploy never cleans them.
pub const DATA_DIRS: [&str; 2] = [TRACKER_LIB_SOURCE, TRACKER_LOG_SOURCE];
const TRACKER_LIB_SOURCE: &str = "storage/tracker/lib";
const TRACKER_LOG_SOURCE: &str = "storage/tracker/log";
/// Where compose mounts a secret named `name` inside a container.
pub fn secret_path(name: &str) -> String {
    format!("/run/secrets/{name}")
}

/// The label that carries the hash of a service's mounted configuration files:
/// a change to it makes `docker compose up` recreate exactly that service.
pub const CONFIG_HASH_LABEL: &str = "tracker-gitops.config-hash";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    /// The compose project name.
    pub project: String,
    pub services: Vec<Service>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub secrets: Vec<ComposeSecret>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub tty: bool,
    /// Sent by `docker compose` to stop the container, when not SIGTERM.
    pub stop_signal: Option<String>,
    pub environment: Vec<EnvVar>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Mount>,
    pub networks: Vec<String>,
    pub depends_on: Vec<Dependency>,
    pub secrets: Vec<String>,
    pub healthcheck: Option<Healthcheck>,
    /// Hash of the rendered files under this service's bind mounts; set by `render`.
    pub config_hash: String,
}

/// An environment variable whose value is literal text and secret references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Text(String),
    /// Interpolated by compose from the deploy-time environment; never a value.
    Secret(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub host_ip: IpAddr,
    pub published: u16,
    pub target: u16,
    pub protocol: Protocol,
    /// Shown beside the port in the compose file.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// `./storage/…` for a bind mount (relative to the compose file), else a volume name.
    pub source: String,
    pub target: String,
    pub bind: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub service: String,
    /// Wait for the dependency's healthcheck, or only for it to start.
    pub healthy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: String,
    pub timeout: String,
    pub retries: u32,
    pub start_period: String,
}

/// A top-level compose secret sourced from a deploy-time environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposeSecret {
    pub name: String,
    pub variable: String,
}

impl Stack {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// What happens to a service between two versions of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceChange {
    Added,
    Removed,
    /// Compose will recreate its container; the reasons name what differs.
    Recreated(Vec<&'static str>),
    Unchanged,
}

impl ServiceChange {
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Recreated(_) => "recreated",
            Self::Unchanged => "unchanged",
        }
    }
}

/// Every service of either stack, in the new stack's order then the removed
/// ones, with what happens to it. `old` is `None` for a new environment.
pub fn compare(old: Option<&Stack>, new: &Stack) -> Vec<(String, ServiceChange)> {
    let mut changes: Vec<(String, ServiceChange)> = new
        .services
        .iter()
        .map(|service| {
            let change = match old.and_then(|old| old.service(&service.name)) {
                None => ServiceChange::Added,
                Some(before) if before == service => ServiceChange::Unchanged,
                Some(before) => ServiceChange::Recreated(differences(before, service)),
            };
            (service.name.clone(), change)
        })
        .collect();
    if let Some(old) = old {
        changes.extend(
            old.services
                .iter()
                .filter(|s| new.service(&s.name).is_none())
                .map(|s| (s.name.clone(), ServiceChange::Removed)),
        );
    }
    changes
}

fn differences(a: &Service, b: &Service) -> Vec<&'static str> {
    [
        (a.image != b.image, "image"),
        (a.config_hash != b.config_hash, "config"),
        (a.ports != b.ports, "ports"),
        (a.environment != b.environment, "environment"),
        (a.volumes != b.volumes, "volumes"),
        (a.networks != b.networks, "networks"),
        (a.depends_on != b.depends_on, "dependencies"),
        (a.secrets != b.secrets, "secrets"),
        (
            a.command != b.command || a.tty != b.tty || a.stop_signal != b.stop_signal,
            "command",
        ),
        (a.healthcheck != b.healthcheck, "healthcheck"),
    ]
    .into_iter()
    .filter_map(|(differs, what)| differs.then_some(what))
    .collect()
}

impl Service {
    fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            command: Vec::new(),
            tty: false,
            stop_signal: None,
            environment: Vec::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            networks: Vec::new(),
            depends_on: Vec::new(),
            secrets: Vec::new(),
            healthcheck: None,
            config_hash: String::new(),
        }
    }

    fn env(&mut self, name: &str, value: impl Into<String>) {
        self.environment.push(EnvVar {
            name: name.into(),
            value: vec![Part::Text(value.into())],
        });
    }

    fn bind(&mut self, source: &str, target: &str) {
        self.volumes.push(Mount {
            source: source.into(),
            target: target.into(),
            bind: true,
        });
    }

    fn volume(&mut self, name: &str, target: &str) {
        self.volumes.push(Mount {
            source: name.into(),
            target: target.into(),
            bind: false,
        });
    }

    fn publish(&mut self, address: SocketAddr, target: u16, protocol: Protocol) {
        self.ports.push(Port {
            host_ip: address.ip(),
            published: address.port(),
            target,
            protocol,
            note: None,
        });
    }

    fn depends(&mut self, service: &str, healthy: bool) {
        self.depends_on.push(Dependency {
            service: service.into(),
            healthy,
        });
    }

    /// The directories (relative to the compose file) whose files this service reads.
    pub fn bind_sources(&self) -> impl Iterator<Item = &str> {
        self.volumes
            .iter()
            .filter(|m| m.bind)
            .map(|m| m.source.trim_start_matches("./"))
    }
}

fn healthcheck(test: &[&str]) -> Healthcheck {
    Healthcheck {
        test: test.iter().map(|s| s.to_string()).collect(),
        // Frequent enough that a deploy's health gate passes within seconds of
        // the service being up (`start_interval` would be better, but Docker
        // Engines before 25 refuse it); each probe is one local request.
        interval: "5s".into(),
        timeout: "3s".into(),
        retries: 5,
        start_period: "60s".into(),
    }
}

/// The address the tracker's health-check API answers on, from inside its container.
pub fn tracker_health_url(env: &Environment) -> String {
    let address = env.file.tracker.health_check_api.bind_address;
    let ip = if address.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        address.ip()
    };
    format!(
        "http://{}/health_check",
        SocketAddr::new(ip, address.port())
    )
}

/// Secret names inside the stack, one per referenced variable.
pub const ADMIN_TOKEN_SECRET: &str = "tracker_admin_token";
const MYSQL_PASSWORD_SECRET: &str = "mysql_password";
const MYSQL_ROOT_PASSWORD_SECRET: &str = "mysql_root_password";
const GRAFANA_PASSWORD_SECRET: &str = "grafana_admin_password";

/// Plans the stack for a valid environment.
pub fn plan(env: &Environment) -> Stack {
    let file = &env.file;
    let tracker_config = &file.tracker;
    let mut secrets = Vec::new();
    let mut secret = |name: &str, variable: &str| {
        secrets.push(ComposeSecret {
            name: name.into(),
            variable: variable.into(),
        });
    };

    let mut tracker = Service::new("tracker", &tracker_config.image);
    // The tracker runs as PID 1, which ignores SIGTERM; it shuts down cleanly on
    // SIGINT. Without this every recreate waits out compose's 10 s stop timeout.
    tracker.stop_signal = Some("SIGINT".into());
    tracker.env("TORRUST_TRACKER_CONFIG_TOML_PATH", TRACKER_CONFIG_FILE);
    let driver = match &tracker_config.core.database {
        Database::Sqlite { .. } => "sqlite3",
        Database::Mysql(_) => "mysql",
    };
    // The 3.0.0 image's entry script refuses to start without it.
    tracker.env(
        "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER",
        driver,
    );
    tracker.environment.push(EnvVar {
        name: "TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN".into(),
        value: vec![Part::Secret(
            tracker_config.http_api.admin_token.name().into(),
        )],
    });
    for l in &tracker_config.udp_trackers {
        tracker.publish(l.bind_address, l.bind_address.port(), Protocol::Udp);
    }
    for l in &tracker_config.http_trackers {
        tracker.publish(l.bind_address, l.bind_address.port(), Protocol::Tcp);
    }
    let api = tracker_config.http_api.bind_address;
    tracker.publish(api, api.port(), Protocol::Tcp);
    tracker.bind(&format!("./{TRACKER_LIB_SOURCE}"), TRACKER_DATA_DIR);
    tracker.bind(
        &format!("./{TRACKER_LOG_SOURCE}"),
        "/var/log/torrust/tracker",
    );
    tracker.bind("./storage/tracker/etc", TRACKER_CONFIG_DIR);
    tracker.healthcheck = Some(healthcheck(&[
        "CMD",
        "/usr/bin/http_health_check",
        &tracker_health_url(env),
    ]));

    let mut services = Vec::new();
    let mut networks = Vec::new();
    let mut volumes = Vec::new();

    if let Database::Mysql(mysql) = &tracker_config.core.database {
        let password = mysql.password.name();
        match env.config_schema() {
            // Schema 2.0.0 takes a URL; the password is spliced in at deploy time.
            ConfigSchema::V2 => tracker.environment.push(EnvVar {
                name: "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH".into(),
                value: vec![
                    Part::Text(format!("mysql://{}:", mysql.user)),
                    Part::Secret(password.into()),
                    Part::Text(format!(
                        "@{}:{}/{}",
                        mysql.host, mysql.port, mysql.database_name
                    )),
                ],
            }),
            ConfigSchema::V3 => tracker.environment.push(EnvVar {
                name: "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PASSWORD".into(),
                value: vec![Part::Secret(password.into())],
            }),
        }
        if mysql.bundled() {
            let mut db = Service::new(
                "mysql",
                mysql
                    .image
                    .as_deref()
                    .unwrap_or(crate::environment::DEFAULT_MYSQL_IMAGE),
            );
            if mysql.port != 3306 {
                db.command = vec!["mysqld".into(), format!("--port={}", mysql.port)];
            }
            db.env("MYSQL_DATABASE", &mysql.database_name);
            db.env("MYSQL_USER", &mysql.user);
            db.env("MYSQL_PASSWORD_FILE", secret_path(MYSQL_PASSWORD_SECRET));
            secret(MYSQL_PASSWORD_SECRET, password);
            db.secrets.push(MYSQL_PASSWORD_SECRET.into());
            match &mysql.root_password {
                Some(root) => {
                    db.env(
                        "MYSQL_ROOT_PASSWORD_FILE",
                        secret_path(MYSQL_ROOT_PASSWORD_SECRET),
                    );
                    secret(MYSQL_ROOT_PASSWORD_SECRET, root.name());
                    db.secrets.push(MYSQL_ROOT_PASSWORD_SECRET.into());
                }
                // Chosen by MySQL at first start, so rendering stays deterministic.
                None => db.env("MYSQL_RANDOM_ROOT_PASSWORD", "yes"),
            }
            db.volume("mysql_data", "/var/lib/mysql");
            volumes.push("mysql_data".to_string());
            db.networks.push("database".into());
            networks.push("database".to_string());
            let port = mysql.port.to_string();
            db.healthcheck = Some(healthcheck(&[
                "CMD",
                "mysqladmin",
                "ping",
                "--host=127.0.0.1",
                &format!("--port={port}"),
                "--silent",
            ]));
            tracker.networks.push("database".into());
            tracker.depends("mysql", true);
            services.push(db);
        }
    }

    if let Some(p) = &file.prometheus {
        let mut prometheus = Service::new("prometheus", &p.image);
        prometheus.tty = true;
        prometheus.command = vec![
            "--config.file=/etc/prometheus/prometheus.yml".into(),
            "--storage.tsdb.path=/prometheus".into(),
        ];
        if let Some(retention) = &p.retention {
            prometheus
                .command
                .push(format!("--storage.tsdb.retention.time={retention}"));
        }
        prometheus.publish(p.publish, 9090, Protocol::Tcp);
        prometheus.ports[0].note =
            Some("no authentication: keep it off the internet (loopback or a firewall)".into());
        prometheus.bind("./storage/prometheus/etc", "/etc/prometheus");
        if p.persist_data {
            prometheus.volume("prometheus_data", "/prometheus");
            volumes.push("prometheus_data".into());
        }
        secret(
            ADMIN_TOKEN_SECRET,
            tracker_config.http_api.admin_token.name(),
        );
        prometheus.secrets.push(ADMIN_TOKEN_SECRET.into());
        prometheus.networks.push("metrics".into());
        tracker.networks.push("metrics".into());
        networks.push("metrics".into());
        // Prometheus retries failed scrapes, so it needs the tracker started, not healthy.
        prometheus.depends("tracker", false);
        prometheus.healthcheck = Some(healthcheck(&[
            "CMD",
            "wget",
            "-q",
            "--spider",
            "http://127.0.0.1:9090/-/healthy",
        ]));
        services.push(prometheus);

        if let Some(g) = &file.grafana {
            let mut grafana = Service::new("grafana", &g.image);
            grafana.env("GF_SECURITY_ADMIN_USER", &g.admin_user);
            grafana.env(
                "GF_SECURITY_ADMIN_PASSWORD__FILE",
                secret_path(GRAFANA_PASSWORD_SECRET),
            );
            if let Some(domain) = &g.domain {
                grafana.env("GF_SERVER_DOMAIN", domain);
                grafana.env("GF_SERVER_ROOT_URL", format!("https://{domain}/"));
            }
            secret(GRAFANA_PASSWORD_SECRET, g.admin_password.name());
            grafana.secrets.push(GRAFANA_PASSWORD_SECRET.into());
            grafana.publish(g.publish, 3000, Protocol::Tcp);
            grafana.bind(
                "./storage/grafana/provisioning",
                "/etc/grafana/provisioning",
            );
            grafana.volume("grafana_data", "/var/lib/grafana");
            volumes.push("grafana_data".into());
            grafana.networks.push("visualization".into());
            services
                .last_mut()
                .expect("prometheus was just pushed")
                .networks
                .push("visualization".into());
            networks.push("visualization".into());
            grafana.depends("prometheus", false);
            grafana.healthcheck = Some(healthcheck(&[
                "CMD",
                "wget",
                "-q",
                "--spider",
                "http://127.0.0.1:3000/api/health",
            ]));
            services.push(grafana);
        }
    }

    services.insert(0, tracker);
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    Stack {
        project: format!("tracker-{}", env.name),
        services,
        networks,
        volumes,
        secrets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::test_environment;

    #[test]
    fn tracker_only_stack() {
        let stack = plan(&test_environment(""));
        let names: Vec<_> = stack.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["tracker"]);
        assert!(stack.networks.is_empty() && stack.volumes.is_empty() && stack.secrets.is_empty());
        let tracker = &stack.services[0];
        let udp = &tracker.ports[0];
        assert_eq!((udp.published, udp.protocol), (6969, Protocol::Udp));
        assert_eq!(tracker.ports[1].host_ip.to_string(), "127.0.0.1");
        assert!(!tracker.ports.iter().any(|p| p.published == 1313));
    }

    #[test]
    fn data_dirs_are_the_tracker_bind_mounts_it_writes() {
        let stack = plan(&test_environment(""));
        let tracker = stack.service("tracker").unwrap();
        let writable: Vec<_> = tracker
            .volumes
            .iter()
            .filter(|m| m.bind && m.target != TRACKER_CONFIG_DIR)
            .map(|m| m.source.trim_start_matches("./"))
            .collect();
        assert_eq!(writable, DATA_DIRS);
    }

    #[test]
    fn prometheus_brings_its_network_volume_and_token_secret() {
        let stack = plan(&test_environment(r#""prometheus": {},"#));
        let prometheus = stack.service("prometheus").unwrap();
        assert_eq!(
            prometheus.depends_on,
            [Dependency {
                service: "tracker".into(),
                healthy: false
            }]
        );
        assert_eq!(prometheus.ports[0].host_ip.to_string(), "127.0.0.1");
        assert_eq!(stack.networks, ["metrics"]);
        assert_eq!(stack.volumes, ["prometheus_data"]);
        assert_eq!(stack.secrets[0].variable, "TOKEN");
        assert!(
            stack
                .service("tracker")
                .unwrap()
                .networks
                .contains(&"metrics".to_string())
        );
    }
}
