//! The Caddy service: HTTPS in front of the services that have a `domain`,
//! with certificates from the environment's ACME CA. Present only when some
//! service has one. Certificates and the ACME account live in a named volume,
//! so deploys (and the removal of files the commit does not have) keep them
//! and a redeploy does not ask the CA again.

use std::net::SocketAddr;

use super::{
    BindDir, Component, Endpoint, EndpointKind, Port, Protocol, Scheme, Service, grafana,
    healthcheck, tracker,
};
use crate::environment::{Environment, TlsService};

pub const SERVICE: &str = "caddy";

/// Holds [`CONFIG_FILE`] and [`CA_ROOT_FILE`], rendered from the environment.
pub const CONFIG_DIR: BindDir = BindDir {
    tree: "storage/caddy/etc",
    container: "/etc/caddy",
};
pub const CONFIG_FILE: &str = "Caddyfile";
/// The private ACME server's root, when the environment names one.
pub const CA_ROOT_FILE: &str = "ca-root.pem";
/// Certificates, keys and the ACME account (`$XDG_DATA_HOME/caddy`).
const DATA_DIR: &str = "/data";
pub const DATA_VOLUME: &str = "caddy_data";
/// A plain-HTTP site's port on loopback inside the container, for the
/// healthcheck: it answers only when Caddy's HTTP server is up.
pub const HEALTH_PORT: u16 = 2080;

/// One site of the Caddyfile: a domain and the services behind it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Site {
    pub domain: String,
    /// In the order Caddy tries them; the last one without a `path` takes the rest.
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    /// The paths it takes (a Caddy path matcher); none for every path.
    pub path: Option<&'static str>,
    /// `service:port` on the stack's network.
    pub upstream: String,
}

/// The upstream of a service behind Caddy and the paths it answers when it
/// shares its domain (validation lets only these share one).
fn route(env: &Environment, service: TlsService, shared: bool) -> Route {
    let tracker_config = &env.file.tracker;
    let (path, upstream) = match service {
        TlsService::HttpTracker(i) => (
            None,
            (
                tracker::SERVICE,
                tracker_config.http_trackers[i].bind_address,
            ),
        ),
        TlsService::HttpApi => (
            Some("/api/*"),
            (tracker::SERVICE, tracker_config.http_api.bind_address),
        ),
        TlsService::HealthCheckApi => (
            Some("/health_check"),
            (
                tracker::SERVICE,
                tracker_config.health_check_api.bind_address,
            ),
        ),
        TlsService::Grafana => (
            None,
            (grafana::SERVICE, SocketAddr::from(([0; 4], grafana::PORT))),
        ),
    };
    Route {
        path: path.filter(|_| shared),
        upstream: format!("{}:{}", upstream.0, upstream.1.port()),
    }
}

/// The sites, one per domain (compared case-insensitively), in file order;
/// on a shared domain the tracker's catch-all route comes last.
pub fn sites(env: &Environment) -> Vec<Site> {
    let domains = env.file.domains();
    let mut sites: Vec<(String, Vec<TlsService>)> = Vec::new();
    for (service, domain) in &domains {
        let domain = domain.to_ascii_lowercase();
        match sites.iter_mut().find(|(d, _)| *d == domain) {
            Some((_, services)) => services.push(*service),
            None => sites.push((domain, vec![*service])),
        }
    }
    sites
        .into_iter()
        .map(|(domain, mut services)| {
            services.sort_by_key(|s| matches!(s, TlsService::HttpTracker(_)));
            let shared = services.len() > 1;
            Site {
                domain,
                routes: services.iter().map(|s| route(env, *s, shared)).collect(),
            }
        })
        .collect()
}

pub(super) fn component(env: &Environment) -> Option<Component> {
    let https = env.file.https.as_ref()?;
    let domains = env.file.domains();
    if domains.is_empty() {
        return None;
    }
    let mut caddy = Service::new(SERVICE, &https.image);
    caddy.command = [
        "caddy",
        "run",
        "--config",
        &CONFIG_DIR.container_path(CONFIG_FILE),
        "--adapter",
        "caddyfile",
    ]
    .map(String::from)
    .to_vec();
    // Where Caddy keeps its state, whatever the image's default.
    caddy.env("XDG_DATA_HOME", DATA_DIR);
    caddy.env("XDG_CONFIG_HOME", "/config");
    for port in [80, 443] {
        caddy.ports.push(Port {
            host_ip: [0, 0, 0, 0].into(),
            published: port,
            target: port,
            protocol: Protocol::Tcp,
            note: None,
        });
    }
    caddy.ports[0].note = Some("ACME HTTP-01 challenges and the redirect to HTTPS".into());
    caddy.bind(CONFIG_DIR);
    caddy.healthcheck = Some(healthcheck(&[
        "CMD",
        "wget",
        "-q",
        "-O",
        "/dev/null",
        &format!("http://127.0.0.1:{HEALTH_PORT}/"),
    ]));

    let mut component = Component::new(caddy);
    // Each service's endpoint is its own (a plan shows it move to HTTPS),
    // though Caddy listens for it.
    for (service, domain) in &domains {
        let (kind, behind, path) = match service {
            TlsService::HttpTracker(_) => {
                (EndpointKind::HttpTracker, tracker::SERVICE, "/announce")
            }
            TlsService::HttpApi => (EndpointKind::HttpApi, tracker::SERVICE, "/api/v1/"),
            TlsService::HealthCheckApi => (
                EndpointKind::HealthCheckApi,
                tracker::SERVICE,
                "/health_check",
            ),
            TlsService::Grafana => (EndpointKind::Grafana, grafana::SERVICE, "/"),
        };
        component.endpoints.push(Endpoint {
            kind,
            service: behind.into(),
            scheme: Scheme::Https,
            address: SocketAddr::from(([0; 4], 443)),
            path: path.into(),
            domain: Some(domain.to_ascii_lowercase()),
        });
    }
    component.volume(DATA_VOLUME, DATA_DIR);
    // A network per service behind Caddy, as for every link of the stack;
    // Caddy retries an upstream that is not up yet, so started is enough.
    if domains.iter().any(|(s, _)| *s != TlsService::Grafana) {
        component.reach(tracker::SERVICE, "proxy_tracker", false);
    }
    if domains.iter().any(|(s, _)| *s == TlsService::Grafana) && env.file.prometheus.is_some() {
        component.reach(grafana::SERVICE, "proxy_grafana", false);
    }
    Some(component)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::{HttpTracker, Https, test_environment};
    use crate::stack::Stack;

    /// The test environment with Prometheus and Grafana, HTTPS on and no domain yet.
    fn environment() -> Environment {
        let mut env = test_environment(
            r#""prometheus": {}, "grafana": { "admin_password": { "secret": "G" } },"#,
        );
        env.file.https = Some(Https {
            email: "ops@example.org".into(),
            ca: "letsencrypt".into(),
            ca_root: None,
            image: "caddy:2.8.4".into(),
        });
        env.file.tracker.http_trackers.push(HttpTracker {
            bind_address: "0.0.0.0:7070".parse().unwrap(),
            domain: None,
        });
        env
    }

    #[test]
    fn no_caddy_without_a_domain() {
        let stack = Stack::build(&environment());
        assert!(stack.service(SERVICE).is_none());
        assert!(stack.service("grafana").unwrap().ports.len() == 1);
    }

    #[test]
    fn a_domain_puts_caddy_in_front_and_closes_the_plain_port() {
        let mut env = environment();
        env.file.grafana.as_mut().unwrap().domain = Some("grafana.example.org".into());
        let stack = Stack::build(&env);
        let caddy = stack.service(SERVICE).unwrap();
        let published: Vec<_> = caddy.ports.iter().map(|p| p.published).collect();
        assert_eq!(published, [80, 443]);
        assert!(stack.service("grafana").unwrap().ports.is_empty());
        assert_eq!(caddy.networks, ["proxy_grafana"]);
        assert!(stack.volumes.contains(&DATA_VOLUME.to_string()));
        assert_eq!(
            sites(&env),
            [Site {
                domain: "grafana.example.org".into(),
                routes: vec![Route {
                    path: None,
                    upstream: "grafana:3000".into()
                }]
            }]
        );
    }

    #[test]
    fn services_sharing_a_domain_are_told_apart_by_path_tracker_last() {
        let mut env = environment();
        let tracker = &mut env.file.tracker;
        tracker.http_trackers[0].domain = Some("T.example.org".into());
        tracker.http_api.domain = Some("t.example.org".into());
        let sites = sites(&env);
        assert_eq!(sites.len(), 1);
        let routes: Vec<_> = sites[0]
            .routes
            .iter()
            .map(|r| (r.path, r.upstream.as_str()))
            .collect();
        assert_eq!(
            routes,
            [(Some("/api/*"), "tracker:1212"), (None, "tracker:7070")]
        );
        let stack = Stack::build(&env);
        let tracker = stack.service(tracker::SERVICE).unwrap();
        let published: Vec<_> = tracker.ports.iter().map(|p| p.published).collect();
        assert_eq!(published, [6969], "only the UDP tracker stays published");
        assert!(tracker.networks.contains(&"proxy_tracker".to_string()));
    }
}
