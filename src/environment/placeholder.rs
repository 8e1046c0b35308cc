//! Values that stand in for the user's own until they are set: `init` writes
//! them so that a new file is complete and valid, but no VM answers to them.
//! `validate` warns about them ("not configured yet"); `deploy`, `rollback`
//! and `status` refuse them before connecting.

use std::net::IpAddr;

use super::model::Deploy;

/// The host key `init` writes: a fingerprint of the right form, of no key.
pub const HOST_KEY: &str = "SHA256:ReplaceWithTheFingerprintOfYourVmsHostKey00";

/// A setting still at a placeholder: where, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub pointer: &'static str,
    pub what: &'static str,
}

/// The placeholders left in a `deploy` section.
pub fn in_deploy(deploy: &Deploy) -> Vec<Placeholder> {
    let mut found = Vec::new();
    if example_host(&deploy.host) {
        found.push(Placeholder {
            pointer: "/deploy/host",
            what: "a name or address reserved for examples (RFC 2606, 5737, 3849)",
        });
    }
    if deploy.host_key == HOST_KEY {
        found.push(Placeholder {
            pointer: "/deploy/host_key",
            what: "the placeholder `init` writes",
        });
    }
    found
}

/// Names and addresses reserved for documentation, which no VM has:
/// `example.com`, `.net`, `.org` and the `.example` and `.invalid` domains,
/// 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.
fn example_host(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => matches!(
            ip.octets(),
            [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _]
        ),
        Ok(IpAddr::V6(ip)) => ip.segments()[..2] == [0x2001, 0x0db8],
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            [
                "example.com",
                "example.net",
                "example.org",
                "example",
                "invalid",
            ]
            .iter()
            .any(|reserved| name == *reserved || name.ends_with(&format!(".{reserved}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_and_documentation_addresses_are_examples() {
        for example in [
            "tracker.example.org",
            "EXAMPLE.COM",
            "vm.example",
            "a.invalid",
            "203.0.113.10",
            "192.0.2.1",
            "2001:db8::1",
        ] {
            assert!(example_host(example), "{example}");
        }
        for real in [
            "tracker.torrust.com",
            "myexample.org",
            "example.org.eu",
            "10.0.0.1",
            "127.0.0.1",
            "2001:db9::1",
        ] {
            assert!(!example_host(real), "{real}");
        }
    }

    #[test]
    fn init_writes_the_placeholders() {
        let init = include_str!("init.json");
        assert!(init.contains(&format!("\"host_key\": \"{HOST_KEY}\"")));
        assert!(init.contains("\"host\": \"tracker.example.org\""));
    }
}
