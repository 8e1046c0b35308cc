//! The Grafana service: dashboards over Prometheus, which it reaches on the
//! `visualization` network; provisioned with Prometheus as its datasource and
//! with the dashboards written for the tracker's two scrape jobs.

use super::{
    BindDir, Component, EndpointKind, Scheme, Service, healthcheck, prometheus, secret_path,
};
use crate::environment::Environment;

pub const SERVICE: &str = "grafana";
pub const PORT: u16 = 3000;
/// The named volume that holds its data.
pub const VOLUME: &str = "grafana_data";

/// Grafana's provisioning directory; holds [`DATASOURCES_FILE`].
pub const PROVISIONING_DIR: BindDir = BindDir {
    tree: "storage/grafana/provisioning",
    container: "/etc/grafana/provisioning",
};
pub const DATASOURCES_FILE: &str = "datasources/prometheus.yml";
/// The dashboard provider, which loads [`DASHBOARDS`] from [`DASHBOARDS_DIR`].
pub const DASHBOARD_PROVIDER_FILE: &str = "dashboards/tracker-gitops.yml";
/// Where the dashboards go in [`PROVISIONING_DIR`].
pub const DASHBOARDS_DIR: &str = "dashboards/tracker-gitops";
/// The dashboards by file name: JSON Grafana loads as it is (not templates:
/// their legends hold Grafana's own `{{label}}` placeholders).
pub const DASHBOARDS: [(&str, &str); 2] = [
    (
        "tracker-stats.json",
        include_str!("../../templates/grafana-dashboards/tracker-stats.json"),
    ),
    (
        "tracker-metrics.json",
        include_str!("../../templates/grafana-dashboards/tracker-metrics.json"),
    ),
];

/// The admin password, as a secret inside the stack.
const PASSWORD_SECRET: &str = "grafana_admin_password";

/// Grafana shows what Prometheus collects: there is none without Prometheus
/// (validation refuses such an environment).
pub(super) fn component(env: &Environment) -> Option<Component> {
    let g = env.file.grafana.as_ref()?;
    env.file.prometheus.as_ref()?;
    let mut grafana = Service::new(SERVICE, &g.image);
    grafana.env("GF_SECURITY_ADMIN_USER", &g.admin_user);
    grafana.env(
        "GF_SECURITY_ADMIN_PASSWORD__FILE",
        secret_path(PASSWORD_SECRET),
    );
    if let Some(domain) = &g.domain {
        grafana.env("GF_SERVER_DOMAIN", domain);
        grafana.env("GF_SERVER_ROOT_URL", format!("https://{domain}/"));
    }
    grafana.bind(PROVISIONING_DIR);
    grafana.healthcheck = Some(healthcheck(&[
        "CMD",
        "wget",
        "-q",
        "--spider",
        &format!("http://127.0.0.1:{PORT}/api/health"),
    ]));

    let mut component = Component::new(grafana);
    // Served over HTTPS by Caddy when it has a domain; else on its own port.
    if !env.file.behind_tls(&g.domain) {
        component.serve(EndpointKind::Grafana, Scheme::Http, g.publish, PORT, "/");
    }
    component.secret(PASSWORD_SECRET, g.admin_password.name());
    component.volume(VOLUME, "/var/lib/grafana");
    component.reach(prometheus::SERVICE, "visualization", false);
    Some(component)
}
