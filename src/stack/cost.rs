//! What recreating a service costs while compose replaces its container, in
//! words a reviewer can weigh: which endpoints stop answering, and what state
//! lives only in the container's memory or filesystem and is lost.

use std::fmt;

use serde::Serialize;

use super::{Service, Stack, prometheus, tracker};

/// One effect of recreating a service; as data, `{"cost": "outage", …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cost", rename_all = "kebab-case")]
pub enum Cost {
    /// These endpoints (URLs) stop answering while the container stops and
    /// the new one starts: seconds, not minutes.
    Outage { endpoints: Vec<String> },
    /// The tracker keeps its swarms (who is downloading what) in memory.
    PeersLost,
    /// The tracker counts completed downloads in memory: its
    /// `persistent_torrent_completed_stat` is off (its default, which the
    /// rendered configuration keeps).
    CompletedCountsLost,
    /// Prometheus scrapes nothing while it restarts.
    MetricsGap,
    /// A directory on no volume: it goes with the old container.
    DataLost { path: String },
    /// These services lose the connection to it meanwhile.
    DependentsInterrupted { services: Vec<String> },
}

/// What recreating `service` of `stack` costs.
pub fn of_recreating(stack: &Stack, service: &Service) -> Vec<Cost> {
    let mut costs = Vec::new();
    let endpoints: Vec<String> = stack
        .endpoints
        .iter()
        .filter(|e| e.service == service.name)
        .map(|e| e.url())
        .collect();
    if !endpoints.is_empty() {
        costs.push(Cost::Outage { endpoints });
    }
    let dependents: Vec<String> = stack
        .services
        .iter()
        .filter(|s| s.depends_on.iter().any(|d| d.service == service.name))
        .map(|s| s.name.clone())
        .collect();
    if !dependents.is_empty() {
        costs.push(Cost::DependentsInterrupted {
            services: dependents,
        });
    }
    match service.name.as_str() {
        tracker::SERVICE => costs.extend([Cost::PeersLost, Cost::CompletedCountsLost]),
        prometheus::SERVICE => {
            costs.push(Cost::MetricsGap);
            if !service
                .volumes
                .iter()
                .any(|m| m.target == prometheus::DATA_DIR)
            {
                costs.push(Cost::DataLost {
                    path: prometheus::DATA_DIR.into(),
                });
            }
        }
        _ => {}
    }
    costs
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|item| format!("`{item}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Self::Outage { endpoints } => write!(
                f,
                "{} {} answering for the seconds the container takes to stop and start",
                list(endpoints),
                if endpoints.len() == 1 { "stops" } else { "stop" }
            ),
            Self::PeersLost => f.write_str(
                "the swarms (peer lists) live in memory and are lost: they fill again as clients announce, within one announce interval",
            ),
            Self::CompletedCountsLost => f.write_str(
                "completed-download counts start again from zero (`persistent_torrent_completed_stat` is off); the database (keys, whitelist) is kept",
            ),
            Self::MetricsGap => f.write_str("no scrapes meanwhile: a gap in the metrics"),
            Self::DataLost { path } => write!(
                f,
                "everything under `{path}` is lost: it is on no volume"
            ),
            Self::DependentsInterrupted { services } => {
                write!(f, "{} cannot reach it meanwhile", list(services))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::test_environment;

    fn costs(prometheus: &str, service: &str) -> Vec<Cost> {
        let stack = Stack::build(&test_environment(prometheus));
        of_recreating(&stack, stack.service(service).unwrap())
    }

    #[test]
    fn a_tracker_drops_its_listeners_and_its_swarms() {
        let costs = costs("", "tracker");
        let Cost::Outage { endpoints } = &costs[0] else {
            panic!("{costs:?}")
        };
        assert!(endpoints.contains(&"udp://0.0.0.0:6969/announce".to_string()));
        assert_eq!(&costs[1..], [Cost::PeersLost, Cost::CompletedCountsLost]);
    }

    #[test]
    fn prometheus_loses_its_metrics_only_without_a_volume() {
        let kept = costs(r#""prometheus": {},"#, "prometheus");
        assert!(kept.contains(&Cost::MetricsGap));
        assert!(!kept.iter().any(|c| matches!(c, Cost::DataLost { .. })));
        let lost = costs(r#""prometheus": { "persist_data": false },"#, "prometheus");
        assert!(lost.contains(&Cost::DataLost {
            path: "/prometheus".into()
        }));
    }
}
