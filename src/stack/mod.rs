//! What runs on the VM, decided once from an environment: services, what they
//! publish and mount, how they depend on each other. A pure function; the
//! templates only lay this out, and plans and deploy commits compare it.
//!
//! One file per service builds it with what it brings (networks, volumes,
//! secrets, the endpoints it serves); [`Stack::build`] asks each and joins
//! them, so a new service is one more file and one more line there. The files
//! also own the paths their service reads, which `render` writes to. Beside
//! them: what changes between two stacks (`change.rs`) and what recreating a
//! service costs (`cost.rs`).

pub(crate) mod backup;
pub(crate) mod caddy;
mod change;
pub(crate) mod cost;
mod database;
mod endpoint;
pub(crate) mod grafana;
pub mod loss;
pub(crate) mod prometheus;
pub(crate) mod tracker;

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::environment::Environment;

pub use change::{Reason, ServiceChange, compare};
pub use cost::Cost;
pub use endpoint::{Endpoint, EndpointKind, Scheme};
pub use tracker::TrackerDatabase;
// The name callers outside the stack know it by.
pub use tracker::health_url as tracker_health_url;

/// Where compose mounts a secret named `name` inside a container.
fn secret_path(name: &str) -> String {
    format!("/run/secrets/{name}")
}

/// A directory of the rendered tree that compose bind-mounts into a container.
#[derive(Debug, Clone, Copy)]
pub struct BindDir {
    /// Relative to the compose file.
    pub tree: &'static str,
    /// Fixed by the image.
    pub container: &'static str,
}

impl BindDir {
    /// Where `file` (relative to the directory) goes in the rendered tree.
    pub fn tree_path(&self, file: &str) -> String {
        format!("{}/{file}", self.tree)
    }

    /// Where the service sees `file`.
    pub fn container_path(&self, file: &str) -> String {
        format!("{}/{file}", self.container)
    }
}

/// The bind-mount sources (relative to the compose file) the tracker writes
/// to: its database and logs. On the VM they are inside the checkout but not
/// in the commit; a deploy never cleans them.
pub const DATA_DIRS: [&str; 2] = [tracker::DATA_DIR.tree, tracker::LOG_DIR.tree];

/// The label that carries the hash of a service's mounted configuration files:
/// a change to it makes `docker compose up` recreate exactly that service.
pub const CONFIG_HASH_LABEL: &str = "tracker-gitops.config-hash";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    /// The compose project name.
    pub project: String,
    pub services: Vec<Service>,
    /// What the services publish, by service in the order they publish it.
    /// Empty in a stack recorded before endpoints were.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub secrets: Vec<ComposeSecret>,
    /// Where the tracker keeps its data; `None` in stacks recorded before
    /// tracker-gitops recorded it.
    #[serde(default)]
    pub database: Option<TrackerDatabase>,
    /// The data losses ([`loss::DataLoss::id`]) the environment accepts for
    /// this version (its `acknowledge_data_loss`): deploy refuses the others.
    #[serde(default)]
    pub acknowledged_data_loss: Vec<String>,
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
    /// The same, percent-encoded for the user-information part of a URL: the
    /// VM exports it as [`URL_ENCODED_PREFIX`]`NAME`, the value being known there only.
    #[serde(rename = "secret_in_url")]
    SecretInUrl(String),
}

/// The prefix of the variables holding percent-encoded secrets (remote.sh
/// exports them; `TG_` is reserved, so no secret can take such a name).
pub const URL_ENCODED_PREFIX: &str = "TG_URLENCODED_";

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
    /// How a bind mount is shared; `None`: private to the service (`:Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

/// A bind mount that is not the service's alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// Read-only, never relabelled.
    #[serde(rename = "ro")]
    ReadOnly,
    /// Written by two services: a shared SELinux label.
    #[serde(rename = "z")]
    Shared,
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

    fn bind(&mut self, dir: BindDir) {
        self.mount(format!("./{}", dir.tree), dir.container, None);
    }

    fn mount(&mut self, source: impl Into<String>, target: &str, access: Option<Access>) {
        self.volumes.push(Mount {
            source: source.into(),
            target: target.into(),
            bind: true,
            access,
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

/// One service and what it brings to the stack, as each builder returns it.
struct Component {
    service: Service,
    /// `(network, service)`: networks this service shares with another one it reaches.
    links: Vec<(&'static str, &'static str)>,
    volumes: Vec<&'static str>,
    secrets: Vec<ComposeSecret>,
    endpoints: Vec<Endpoint>,
}

impl Component {
    fn new(service: Service) -> Self {
        Self {
            service,
            links: Vec::new(),
            volumes: Vec::new(),
            secrets: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    /// Publishes `address` on the VM to `target` in the container, where
    /// `kind` answers `path` over `scheme`.
    fn serve(
        &mut self,
        kind: EndpointKind,
        scheme: Scheme,
        address: SocketAddr,
        target: u16,
        path: &str,
    ) {
        self.service.ports.push(Port {
            host_ip: address.ip(),
            published: address.port(),
            target,
            protocol: scheme.protocol(),
            note: None,
        });
        self.endpoints.push(Endpoint {
            kind,
            service: self.service.name.clone(),
            scheme,
            address,
            path: path.into(),
            domain: None,
        });
    }

    /// A named volume of the stack, mounted at `target`.
    fn volume(&mut self, name: &'static str, target: &str) {
        self.service.volumes.push(Mount {
            source: name.into(),
            target: target.into(),
            bind: false,
            access: None,
        });
        self.volumes.push(name);
    }

    /// A secret of the stack, from the deploy-time `variable`, mounted by compose
    /// at [`secret_path`].
    fn secret(&mut self, name: &str, variable: &str) {
        self.service.secrets.push(name.into());
        self.secrets.push(ComposeSecret {
            name: name.into(),
            variable: variable.into(),
        });
    }

    /// Reaches `service` over `network`, which both join, once `service` has
    /// started (and is healthy, when `healthy`).
    fn reach(&mut self, service: &'static str, network: &'static str, healthy: bool) {
        self.service.networks.push(network.into());
        self.service.depends(service, healthy);
        self.links.push((network, service));
    }
}

/// Adds `item` unless it is there: two services may reach the same one, or
/// bring the same secret.
fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl Stack {
    /// The stack for a valid environment: its services in this order, each
    /// with what it brings.
    pub fn build(env: &Environment) -> Stack {
        let components: Vec<Component> = [
            Some(tracker::component(env)),
            database::component(env),
            prometheus::component(env),
            grafana::component(env),
            backup::component(env),
            caddy::component(env),
        ]
        .into_iter()
        .flatten()
        .collect();

        let mut stack = Stack {
            project: format!("tracker-{}", env.name),
            services: Vec::new(),
            endpoints: Vec::new(),
            networks: Vec::new(),
            volumes: Vec::new(),
            secrets: Vec::new(),
            database: Some(TrackerDatabase::of(&env.file.tracker.core.database)),
            acknowledged_data_loss: env.file.acknowledge_data_loss.clone(),
        };
        let mut links = Vec::new();
        for component in components {
            for (network, _) in &component.links {
                push_new(&mut stack.networks, network.to_string());
            }
            for volume in component.volumes {
                push_new(&mut stack.volumes, volume.to_string());
            }
            for secret in component.secrets {
                push_new(&mut stack.secrets, secret);
            }
            links.extend(component.links);
            stack.endpoints.extend(component.endpoints);
            stack.services.push(component.service);
        }
        // A builder reaches only services whose presence it checked, so each is there.
        for (network, name) in links {
            if let Some(service) = stack.services.iter_mut().find(|s| s.name == name) {
                push_new(&mut service.networks, network.to_string());
            }
        }
        stack.secrets.sort_by(|a, b| a.name.cmp(&b.name));
        stack
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::test_environment;

    #[test]
    fn tracker_only_stack() {
        let stack = Stack::build(&test_environment(""));
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
        let stack = Stack::build(&test_environment(""));
        let writable: Vec<_> = stack
            .service(tracker::SERVICE)
            .unwrap()
            .volumes
            .iter()
            .filter(|m| m.bind && m.target != tracker::CONFIG_DIR.container)
            .map(|m| m.source.trim_start_matches("./"))
            .collect();
        assert_eq!(writable, DATA_DIRS);
    }

    #[test]
    fn prometheus_brings_its_network_volume_and_token_secret() {
        let stack = Stack::build(&test_environment(r#""prometheus": {},"#));
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

    #[test]
    fn every_network_joins_the_two_services_of_a_link() {
        let stack = Stack::build(&test_environment(
            r#""prometheus": {}, "grafana": { "admin_password": { "secret": "GRAFANA" } },"#,
        ));
        let members = |network: &str| -> Vec<&str> {
            stack
                .services
                .iter()
                .filter(|s| s.networks.iter().any(|n| n == network))
                .map(|s| s.name.as_str())
                .collect()
        };
        assert_eq!(stack.networks, ["metrics", "visualization"]);
        assert_eq!(members("metrics"), ["tracker", "prometheus"]);
        assert_eq!(members("visualization"), ["prometheus", "grafana"]);
        assert_eq!(
            stack.service("prometheus").unwrap().networks,
            ["metrics", "visualization"]
        );
    }
}
