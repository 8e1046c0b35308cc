//! An environment's endpoints before and after: the same endpoint at both
//! sides is unchanged; one of the same kind that moves (another port, or from
//! loopback to every interface) is one changed endpoint, not one removed and
//! one added, so a reviewer sees "the API goes public" on one line.

use std::net::SocketAddr;

use serde::Serialize;

use super::Change;
use crate::stack::{Endpoint, EndpointKind, Stack};

/// One endpoint at either side.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointPlan {
    pub kind: EndpointKind,
    pub service: String,
    pub change: Change,
    /// At the base; `None` when added.
    pub before: Option<EndpointSide>,
    /// Now; `None` when removed.
    pub after: Option<EndpointSide>,
}

/// An endpoint at one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointSide {
    pub url: String,
    pub address: SocketAddr,
    /// Bound to other interfaces than loopback.
    pub public: bool,
}

/// Every endpoint of `before` and `after`, paired, by kind (each kind in the
/// order of `after`, then the removed ones).
pub(super) fn compare(before: &[Endpoint], after: &[Endpoint]) -> Vec<EndpointPlan> {
    let mut unmatched: Vec<Option<&Endpoint>> = before.iter().map(Some).collect();
    // The same endpoint first, so that a moved one cannot take its place.
    let mut pairs: Vec<(Option<&Endpoint>, &Endpoint)> = after
        .iter()
        .map(|now| (take(&mut unmatched, |old| old == now), now))
        .collect();
    for (old, now) in &mut pairs {
        if old.is_none() {
            *old = take(&mut unmatched, |e| {
                e.kind == now.kind && e.service == now.service
            });
        }
    }
    let mut plans: Vec<EndpointPlan> = pairs
        .into_iter()
        .map(|(old, now)| EndpointPlan::between(old, Some(now)))
        .chain(
            unmatched
                .into_iter()
                .flatten()
                .map(|old| EndpointPlan::between(Some(old), None)),
        )
        .collect();
    plans.sort_by_key(|plan| plan.kind);
    plans
}

/// The endpoints of `before`, a stack at the base; for one recorded before
/// stacks recorded endpoints (an older tracker-gitops), those of `after`
/// that the same service published then: its ports say where, not what.
pub(super) fn at_base(before: &Stack, after: &[Endpoint]) -> Vec<Endpoint> {
    let recorded =
        !before.endpoints.is_empty() || before.services.iter().all(|s| s.ports.is_empty());
    if recorded {
        return before.endpoints.clone();
    }
    after
        .iter()
        .filter(|e| {
            before.service(&e.service).is_some_and(|s| {
                s.ports.iter().any(|p| {
                    (p.host_ip, p.published, p.protocol)
                        == (e.address.ip(), e.address.port(), e.scheme.protocol())
                })
            })
        })
        .cloned()
        .collect()
}

/// The first endpoint left in `unmatched` that `matches`, taken out.
fn take<'a>(
    unmatched: &mut [Option<&'a Endpoint>],
    matches: impl Fn(&Endpoint) -> bool,
) -> Option<&'a Endpoint> {
    unmatched
        .iter_mut()
        .find(|slot| slot.is_some_and(&matches))?
        .take()
}

impl EndpointPlan {
    /// At least one side is `Some`.
    fn between(before: Option<&Endpoint>, after: Option<&Endpoint>) -> Self {
        let either = after.or(before).expect("an endpoint at one side");
        let (kind, service) = (either.kind, either.service.clone());
        let (before, after) = (before.map(EndpointSide::of), after.map(EndpointSide::of));
        let change = match (&before, &after) {
            (None, _) => Change::Added,
            (_, None) => Change::Removed,
            (Some(b), Some(a)) if a == b => Change::Unchanged,
            _ => Change::Changed,
        };
        Self {
            kind,
            service,
            change,
            before,
            after,
        }
    }
}

impl EndpointSide {
    fn of(endpoint: &Endpoint) -> Self {
        Self {
            url: endpoint.url(),
            address: endpoint.address,
            public: endpoint.is_public(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::Scheme;

    fn endpoint(kind: EndpointKind, address: &str) -> Endpoint {
        Endpoint {
            kind,
            service: "tracker".into(),
            scheme: Scheme::Udp,
            address: address.parse().unwrap(),
            path: "/announce".into(),
            domain: None,
        }
    }

    fn changes(plans: &[EndpointPlan]) -> Vec<(EndpointKind, Change)> {
        plans.iter().map(|p| (p.kind, p.change)).collect()
    }

    #[test]
    fn pairs_the_same_endpoint_then_moves_then_adds_and_removes() {
        use EndpointKind::{HttpApi, UdpTracker};
        let before = [
            endpoint(UdpTracker, "0.0.0.0:6969"),
            endpoint(UdpTracker, "0.0.0.0:6868"),
            endpoint(HttpApi, "127.0.0.1:1212"),
        ];
        let after = [
            endpoint(HttpApi, "0.0.0.0:1212"),
            endpoint(UdpTracker, "0.0.0.0:6868"),
        ];
        let plans = compare(&before, &after);
        assert_eq!(
            changes(&plans),
            [
                (UdpTracker, Change::Unchanged),
                (UdpTracker, Change::Removed),
                (HttpApi, Change::Changed)
            ]
        );
        assert_eq!(
            plans[1].before.as_ref().unwrap().url,
            "udp://0.0.0.0:6969/announce"
        );
        let api = &plans[2];
        assert!(!api.before.as_ref().unwrap().public && api.after.as_ref().unwrap().public);
    }

    #[test]
    fn a_base_without_recorded_endpoints_has_those_its_ports_publish() {
        let env = crate::environment::test_environment("");
        let mut old = Stack::build(&env);
        let now = old.endpoints.clone();
        assert_eq!(at_base(&old, &now), now);
        old.endpoints.clear();
        old.services[0].ports.remove(0);
        assert_eq!(at_base(&old, &now), now[1..]);
    }
}
