//! The Prometheus service: scrapes the tracker's API on the `metrics` network
//! with the admin token, read from a compose secret file.

use super::{BindDir, Component, EndpointKind, Scheme, Service, healthcheck, secret_path, tracker};
use crate::environment::Environment;

pub const SERVICE: &str = "prometheus";
/// The port Prometheus listens on inside its container.
pub const PORT: u16 = 9090;

/// Holds [`CONFIG_FILE`], rendered from the environment.
pub const CONFIG_DIR: BindDir = BindDir {
    tree: "storage/prometheus/etc",
    container: "/etc/prometheus",
};
pub const CONFIG_FILE: &str = "prometheus.yml";
/// Where Prometheus keeps its metrics: a volume with `persist_data`, else the
/// container's own filesystem.
pub const DATA_DIR: &str = "/prometheus";
/// The named volume that holds its data.
pub const VOLUME: &str = "prometheus_data";

/// The tracker's admin token, as a secret inside the stack.
const TOKEN_SECRET: &str = "tracker_admin_token";

/// Where Prometheus reads the admin token from.
pub fn token_file() -> String {
    secret_path(TOKEN_SECRET)
}

pub(super) fn component(env: &Environment) -> Option<Component> {
    let p = env.file.prometheus.as_ref()?;
    let mut prometheus = Service::new(SERVICE, &p.image);
    prometheus.tty = true;
    prometheus.command = vec![
        format!("--config.file={}", CONFIG_DIR.container_path(CONFIG_FILE)),
        format!("--storage.tsdb.path={DATA_DIR}"),
    ];
    if let Some(retention) = &p.retention {
        prometheus
            .command
            .push(format!("--storage.tsdb.retention.time={retention}"));
    }
    prometheus.bind(CONFIG_DIR);
    prometheus.healthcheck = Some(healthcheck(&[
        "CMD",
        "wget",
        "-q",
        "--spider",
        &format!("http://127.0.0.1:{PORT}/-/healthy"),
    ]));

    let mut component = Component::new(prometheus);
    component.serve(EndpointKind::Prometheus, Scheme::Http, p.publish, PORT, "/");
    component.service.ports[0].note =
        Some("no authentication: keep it off the internet (loopback or a firewall)".into());
    if p.persist_data {
        component.volume(VOLUME, DATA_DIR);
    }
    component.secret(TOKEN_SECRET, env.file.tracker.http_api.admin_token.name());
    // Prometheus retries failed scrapes, so it needs the tracker started, not healthy.
    component.reach(tracker::SERVICE, "metrics", false);
    Some(component)
}
