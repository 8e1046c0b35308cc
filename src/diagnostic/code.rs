//! Stable codes for diagnostics, like rustc's and cargo-deny's: a message may
//! be reworded, its code stays, so scripts, annotations and people searching
//! the README can rely on it. The README's table of codes is checked against
//! this list.

use std::fmt;

use serde::{Serialize, Serializer};

macro_rules! codes {
    ($($variant:ident = $code:literal: $meaning:literal,)*) => {
        /// What kind of problem a diagnostic is.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $(#[doc = $meaning] $variant,)*
        }

        impl Code {
            /// Every code, in the order of the README's table.
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            /// The kebab-case code, as printed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            /// What the code means, as the README explains it.
            #[cfg(test)]
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)*
                }
            }
        }
    };
}

codes! {
    FileTooLarge = "file-too-large": "The file is larger than the 1 MiB an environment file may be.",
    NotUtf8 = "not-utf8": "The file is not valid UTF-8.",
    ByteOrderMark = "byte-order-mark": "The file starts with a UTF-8 byte-order mark, which JSON forbids.",
    TooDeep = "too-deep": "Brackets nest deeper than 32 levels.",
    SyntaxError = "syntax-error": "The file is not strict JSON (comments, trailing commas, single quotes, …).",
    EmptyFile = "empty-file": "The file holds no JSON value.",
    DuplicateKey = "duplicate-key": "A key appears twice in one object.",
    NumberTooLarge = "number-too-large": "A number does not fit in 64 bits.",
    ControlCharacter = "control-character": "A raw control character (a line break, say) inside a string.",
    UnknownKey = "unknown-key": "A key the schema does not know, often a typo.",
    MissingKey = "missing-key": "A required key is missing.",
    WrongType = "wrong-type": "A value of the wrong JSON type.",
    LiteralSecret = "literal-secret": "A value where a secret reference (`{\"secret\": \"NAME\"}`) belongs.",
    InvalidChoice = "invalid-choice": "A value that is not one of those allowed.",
    OutOfRange = "out-of-range": "A number below its minimum or above its maximum.",
    WrongLength = "wrong-length": "A string or a list longer (or shorter) than allowed.",
    InvalidFormat = "invalid-format": "A string not in its required form: secret names, host names, image references, paths and others.",
    SchemaViolation = "schema-violation": "Any other rule of the schema.",
    InvalidEnvironmentName = "invalid-environment-name": "The file name does not make a valid environment name.",
    InvalidAddress = "invalid-address": "A listener or publish address that is not `ip:port`.",
    PortZero = "port-zero": "Port 0: clients and the firewall need a fixed port.",
    PortConflict = "port-conflict": "Two listeners that cannot both bind their port.",
    ReservedSecretName = "reserved-secret-name": "A secret name that CI, the shell or a tool already uses.",
    GrafanaWithoutPrometheus = "grafana-without-prometheus": "A `grafana` section without the `prometheus` it shows.",
    UnknownConfigSchema = "unknown-config-schema": "The tracker image's configuration schema is neither known nor stated.",
    ConfigSchemaMismatch = "config-schema-mismatch": "`config_schema` is not the one the tracker image is known to take.",
    NoMetrics = "no-metrics": "Prometheus with a tracker image that has no metrics endpoints.",
    IntervalMinAboveInterval = "interval-min-above-interval": "`interval_min` is greater than `interval`.",
    MysqlRootUser = "mysql-root-user": "The tracker would connect to MySQL as `root`.",
    ExternalMysqlSetting = "external-mysql-setting": "`image` or `root_password` with an external MySQL server, where they do nothing.",
    ImpossibleAcknowledgement = "impossible-acknowledgement": "An `acknowledge_data_loss` id for a change that does not lead to this file: the database, service or volume it names is not what the file has.",
    InvalidSchedule = "invalid-schedule": "`backup.schedule` is not a 5-field cron expression.",
    BackupInCheckout = "backup-in-checkout": "`backup.path` inside the VM's checkout, which every deploy cleans.",
    BackupWithoutRootPassword = "backup-without-root-password": "A backup of MySQL without the `root_password` its verification needs.",
    BackupExternalMysql = "backup-external-mysql": "A `backup` section with an external MySQL server, which the stack does not back up.",
    MovingTag = "moving-tag": "A warning: an image by a tag that can move (`develop`, `latest`), not by digest.",
    NotConfigured = "not-configured": "A warning: a VM setting still holds a placeholder (an example host, the host key `init` writes); `deploy`, `rollback` and `status` refuse it.",
    UnauthenticatedService = "unauthenticated-service": "A warning: Prometheus, which has no authentication, published on an address other than loopback.",
    InvalidBranchName = "invalid-branch-name": "`deploy.branch` is not a valid git branch name.",
    BranchOutsideNamespace = "branch-outside-namespace": "An explicit `deploy.branch` outside the deploy namespace (`deploy/`).",
    ProtectedBranch = "protected-branch": "The deploy branch is the checked-out (source) branch or `origin`'s default branch.",
    BranchCollision = "branch-collision": "Two environments on one deploy branch, or one's branch inside another's.",
    DestinationCollision = "destination-collision": "Two environments in one VM directory, or one's inside another's.",
    HttpsWithoutDomain = "https-without-domain": "An `https` section, but no service with a `domain` to serve.",
    DomainWithoutHttps = "domain-without-https": "A service with a `domain` (HTTPS) but no `https` section.",
    InvalidDomain = "invalid-domain": "A `domain` that is not a host name a CA can certify (an IP address, a label over 63 characters).",
    DomainCollision = "domain-collision": "Two services on one domain that their paths cannot tell apart.",
    PublishedBehindTls = "published-behind-tls": "A service served over HTTPS whose plain port would still be published.",
    HttpsPortConflict = "https-port-conflict": "A published listener on port 80 or 443, which Caddy takes for HTTPS.",
    MixedReverseProxy = "mixed-reverse-proxy": "HTTP trackers with and without a `domain` under configuration schema 2.0.0, which has one `on_reverse_proxy` for all.",
    NotImported = "not-imported": "A warning from `import`: a setting of the upstream deployer's file that is not carried over, and why.",
    InternalError = "internal-error": "A bug in tracker-gitops: please report it.",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(
                text.split('-').all(|word| !word.is_empty()
                    && word
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())),
                "{text} is not kebab-case"
            );
        }
    }

    /// The README's table lists every code, in order, with its meaning.
    #[test]
    fn the_readme_explains_every_code() {
        let readme = include_str!("../../README.md");
        let rows: Vec<(&str, &str)> = readme
            .lines()
            .skip_while(|line| *line != "| code | meaning |")
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let row = line.strip_prefix("| `").and_then(|l| l.strip_suffix(" |"));
                row.and_then(|row| row.split_once("` | "))
                    .unwrap_or_else(|| panic!("not a `| `code` | meaning |` row: {line}"))
            })
            .collect();
        let expected: Vec<(&str, &str)> = Code::ALL
            .iter()
            .map(|c| (c.as_str(), c.meaning()))
            .collect();
        assert_eq!(rows, expected);
    }
}
