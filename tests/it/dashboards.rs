//! The Grafana dashboards `render` provisions: valid JSON over the
//! provisioned datasource, every query on a job the rendered `prometheus.yml`
//! scrapes and a metric that job serves, and every expression accepted by
//! the real `promtool`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::harness::{Project, tool};

const DIR: &str = "build/production/storage/grafana/provisioning";

/// What the tracker serves on each scrape job (torrust-tracker's
/// `/api/v1/stats?format=prometheus` and `/api/v1/metrics?format=prometheus`).
const JOB_METRICS: &[(&str, &[&str])] = &[
    (
        "tracker_stats",
        &[
            "torrents",
            "seeders",
            "completed",
            "leechers",
            "tcp4_connections_handled",
            "tcp4_announces_handled",
            "tcp4_scrapes_handled",
            "tcp6_connections_handled",
            "tcp6_announces_handled",
            "tcp6_scrapes_handled",
            "udp_requests_aborted",
            "udp_requests_banned",
            "udp_banned_ips_total",
            "udp_avg_connect_processing_time_ns",
            "udp_avg_announce_processing_time_ns",
            "udp_avg_scrape_processing_time_ns",
            "udp4_requests",
            "udp4_connections_handled",
            "udp4_announces_handled",
            "udp4_scrapes_handled",
            "udp4_responses",
            "udp4_errors_handled",
            "udp6_requests",
            "udp6_connections_handled",
            "udp6_announces_handled",
            "udp6_scrapes_handled",
            "udp6_responses",
            "udp6_errors_handled",
        ],
    ),
    (
        "tracker_metrics",
        &[
            "swarm_coordination_registry_torrents_added_total",
            "swarm_coordination_registry_torrents_removed_total",
            "swarm_coordination_registry_torrents_total",
            "swarm_coordination_registry_torrents_downloads_total",
            "swarm_coordination_registry_torrents_inactive_total",
            "swarm_coordination_registry_peers_added_total",
            "swarm_coordination_registry_peers_removed_total",
            "swarm_coordination_registry_peers_updated_total",
            "swarm_coordination_registry_peer_connections_total",
            "swarm_coordination_registry_unique_peers_total",
            "swarm_coordination_registry_peers_inactive_total",
            "tracker_core_in_session_torrents_downloads_total",
            "tracker_core_persisted_torrents_downloads_total",
            "http_tracker_core_requests_received_total",
            "udp_tracker_core_requests_received_total",
            "udp_tracker_server_requests_aborted_total",
            "udp_tracker_server_requests_banned_total",
            "udp_tracker_server_ips_banned_total",
            "udp_tracker_server_connection_id_errors_total",
            "udp_tracker_server_requests_received_total",
            "udp_tracker_server_requests_accepted_total",
            "udp_tracker_server_responses_sent_total",
            "udp_tracker_server_errors_total",
            "udp_tracker_server_performance_avg_processing_time_ns",
        ],
    ),
];

/// Series Prometheus adds to every job it scrapes.
const SCRAPE_SERIES: &[&str] = &["up", "scrape_duration_seconds"];
/// PromQL words the dashboards use besides selectors, and the labels they group by.
const PROMQL_WORDS: &[&str] = &["rate", "increase", "sum", "max", "by"];
const LABELS: &[&str] = &["peer_role", "request_kind"];

fn rendered() -> Project {
    let project = Project::with_examples();
    project.run(&["render", "--env", "production"]).expect(0);
    project
}

/// Every dashboard file: (name, JSON).
fn dashboards(project: &Project) -> Vec<(String, Value)> {
    let dir = project.join(&format!("{DIR}/dashboards/tracker-gitops"));
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Every query of a dashboard: (panel title, expression).
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap().to_string();
            found.push((title, target["expr"].as_str().unwrap().to_string()));
        }
    }
    found
}

/// The selectors of `expr` as (metric, job), and what is left once they,
/// durations and numbers are taken out: identifiers other than selectors.
fn selectors(expr: &str) -> (Vec<(String, String)>, Vec<String>) {
    let (mut selectors, mut words) = (Vec::new(), Vec::new());
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '[') {
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix('[') {
            rest = &after[after.find(']').expect("a closed range") + 1..];
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        match after.strip_prefix('{') {
            Some(matchers) => {
                let close = matchers.find('}').expect("a closed selector");
                let job = matchers[..close]
                    .strip_prefix("job=\"")
                    .and_then(|m| m.split('"').next())
                    .unwrap_or_default();
                selectors.push((word.to_string(), job.to_string()));
                rest = &matchers[close + 1..];
            }
            None => {
                words.push(word.to_string());
                rest = after;
            }
        }
    }
    (selectors, words)
}

/// The scrape jobs of the rendered `prometheus.yml`.
fn jobs(project: &Project) -> BTreeSet<String> {
    let text = project.read("build/production/storage/prometheus/etc/prometheus.yml");
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|job| job["job_name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dashboards_query_only_what_the_stack_scrapes() {
    let project = rendered();
    let datasources: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&project.read(&format!("{DIR}/datasources/prometheus.yml")))
            .unwrap();
    let datasource = datasources["datasources"][0]["uid"].as_str().unwrap();
    let provider: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&project.read(&format!("{DIR}/dashboards/tracker-gitops.yml")))
            .unwrap();
    assert_eq!(
        provider["providers"][0]["options"]["path"].as_str(),
        Some("/etc/grafana/provisioning/dashboards/tracker-gitops")
    );
    let jobs = jobs(&project);
    let dashboards = dashboards(&project);
    let names: Vec<_> = dashboards.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["tracker-metrics.json", "tracker-stats.json"]);
    let mut uids = BTreeSet::new();
    let mut jobs_shown = BTreeSet::new();
    for (name, dashboard) in &dashboards {
        assert!(uids.insert(dashboard["uid"].as_str().unwrap().to_string()));
        let panels = dashboard["panels"].as_array().unwrap();
        let ids: BTreeSet<_> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        assert_eq!(ids.len(), panels.len(), "{name}: panel ids are unique");
        for panel in panels.iter().filter(|p| p["type"] != "row") {
            assert_eq!(
                panel["datasource"]["uid"], datasource,
                "{name}: {}",
                panel["title"]
            );
        }
        let expressions = expressions(dashboard);
        assert!(expressions.len() >= 10, "{name}");
        for (title, expr) in expressions {
            let (selectors, words) = selectors(&expr);
            assert!(!selectors.is_empty(), "{name}: {title}: {expr}");
            for word in words {
                assert!(
                    PROMQL_WORDS.contains(&word.as_str()) || LABELS.contains(&word.as_str()),
                    "{name}: {title}: `{word}` is a selector without a job, or unknown: {expr}"
                );
            }
            for (metric, job) in selectors {
                assert!(
                    jobs.contains(&job),
                    "{name}: {title}: job `{job}` is not scraped"
                );
                let served = JOB_METRICS
                    .iter()
                    .find(|(j, _)| *j == job)
                    .map(|(_, metrics)| metrics.contains(&metric.as_str()))
                    .unwrap_or(false);
                assert!(
                    served || SCRAPE_SERIES.contains(&metric.as_str()),
                    "{name}: {title}: job `{job}` has no metric `{metric}`"
                );
                jobs_shown.insert(job);
            }
        }
    }
    assert_eq!(
        jobs_shown,
        BTreeSet::from(["tracker_metrics".to_string(), "tracker_stats".into()])
    );
}

#[test]
fn the_selector_reader_finds_what_it_must_refuse() {
    let (selectors, words) = selectors(r#"sum by (peer_role) (rate(x{job="a"}[5m])) + y"#);
    assert_eq!(selectors, [("x".to_string(), "a".to_string())]);
    assert_eq!(words, ["sum", "by", "peer_role", "rate", "y"]);
}

#[test]
#[ignore = "needs .ci/install: promtool"]
fn promtool_parses_every_dashboard_expression() {
    let project = rendered();
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut count = 0;
    for (_, dashboard) in dashboards(&project) {
        for (_, expr) in expressions(&dashboard) {
            count += 1;
            rules.push_str(&format!(
                "      - record: dashboard:expression_{count}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            ));
        }
    }
    project.write("rules.yml", &rules);
    let output = tool("promtool")
        .args(["check", "rules"])
        .arg(project.join("rules.yml"))
        .output()
        .expect("promtool is installed (.ci/install)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&format!("SUCCESS: {count} rules found")),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    // A broken expression fails: the check can fail.
    project.write(
        "broken.yml",
        "groups:\n  - name: b\n    rules:\n      - record: b:x\n        expr: rate(x[5m]\n",
    );
    let broken = tool("promtool")
        .args(["check", "rules"])
        .arg(project.join("broken.yml"))
        .output()
        .unwrap();
    assert!(!broken.status.success());
}
