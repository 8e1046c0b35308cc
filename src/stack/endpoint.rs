//! What a stack serves and where: each published listener with what answers
//! there. A port number says little to a reviewer; "the UDP tracker, public,
//! at `udp://0.0.0.0:6969/announce`" says what a change exposes or takes away,
//! so plans compare endpoints, recorded with the stack, not compose text.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::Protocol;

/// One published listener of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub kind: EndpointKind,
    pub service: String,
    pub scheme: Scheme,
    /// Where the VM listens; an unspecified IP is every interface.
    pub address: SocketAddr,
    /// What clients ask for there, e.g. `/announce`.
    pub path: String,
    /// The host name clients use, for an endpoint served over HTTPS by Caddy
    /// (which listens at `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// What answers at an endpoint, in the order plans list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointKind {
    UdpTracker,
    HttpTracker,
    /// The tracker's REST API.
    HttpApi,
    /// The tracker's health check, public only over HTTPS.
    HealthCheckApi,
    Prometheus,
    Grafana,
}

/// The URL scheme clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Udp,
    Http,
    Https,
}

impl Endpoint {
    /// Reachable from other machines: not bound to loopback.
    pub fn is_public(&self) -> bool {
        !self.address.ip().is_loopback()
    }

    /// e.g. `udp://0.0.0.0:6969/announce`, the address as published, or
    /// `https://tracker.example.org/announce` behind Caddy.
    pub fn url(&self) -> String {
        match &self.domain {
            Some(domain) => format!("{}://{domain}{}", self.scheme, self.path),
            None => format!("{}://{}{}", self.scheme, self.address, self.path),
        }
    }
}

impl Scheme {
    /// The transport compose publishes the port with.
    pub fn protocol(self) -> Protocol {
        match self {
            Self::Udp => Protocol::Udp,
            Self::Http | Self::Https => Protocol::Tcp,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "udp",
            Self::Http => "http",
            Self::Https => "https",
        })
    }
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UdpTracker => "UDP tracker",
            Self::HttpTracker => "HTTP tracker",
            Self::HttpApi => "REST API",
            Self::HealthCheckApi => "health-check API",
            Self::Prometheus => "Prometheus",
            Self::Grafana => "Grafana",
        })
    }
}
