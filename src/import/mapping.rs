//! Upstream settings → a tracker-gitops environment, keeping the books: every
//! upstream value is carried over (and where to), turned into a secret
//! reference, or dropped with a reason, and every value the upstream file
//! cannot express is a choice that says why. The books let `import` locate
//! problems of the result in the upstream file and prove nothing was dropped
//! silently.

use std::net::SocketAddr;

use super::upstream::{self, Tls};
use crate::diagnostic::Diagnostic;
use crate::environment::schema::conventional_secret_name;
use crate::environment::{
    AnnouncePolicy, Backup, Core, Database, Deploy, Document, EnvironmentFile, Grafana,
    HealthCheckApi, HttpApi, HttpTracker, Https, Listener, LogLevel, Mysql, Prometheus,
    SCHEMA_REFERENCE, Secret, Tracker, TrackerPolicy, default_backup_image, default_caddy_image,
    default_grafana_image, default_grafana_publish, default_prometheus_image,
    default_prometheus_publish, parse_address, placeholder, runs_per_day,
};

/// The tracker image: the upstream file cannot name one, and the upstream
/// deployer always runs this one, which also has the metrics Prometheus reads.
pub const TRACKER_IMAGE: &str = "torrust/tracker:develop";
/// The announce interval the upstream deployer writes into every tracker configuration.
const UPSTREAM_ANNOUNCE_INTERVAL: u32 = 300;
/// Where the upstream deployer publishes Grafana when it is not behind TLS.
const UPSTREAM_GRAFANA_PUBLISH: ([u8; 4], u16) = ([0, 0, 0, 0], 3000);
/// Placeholders for what only the VM knows, as `init` writes them.
const PLACEHOLDER_HOST: &str = "tracker.example.org";

/// Why a whole section or key has no counterpart.
const PROVISIONING: &str = "provisioning is not tracker-gitops' job: it deploys to a VM that \
     already exists (the one the upstream deployer created) and never creates one";
/// The most backups `backup.keep` may ask for.
const MAX_BACKUPS_KEPT: u32 = 1000;
/// Why a value is what the upstream deployer always runs with.
const UPSTREAM_FIXED: &str = "what the upstream deployer configures, whatever its file says";
/// The upstream deployer's ACME directories, by this tool's names for them.
const CA_PRODUCTION: &str = "letsencrypt";
const CA_STAGING: &str = "letsencrypt-staging";
pub const UNMAPPED: &str = "tracker-gitops has no counterpart for it";

/// A secret of the upstream file, now a reference: the CI secret to create.
#[derive(Debug)]
pub struct SecretToCreate {
    /// The GitHub environment secret's name.
    pub name: &'static str,
    pub source: Source,
}

/// Where a secret's value is.
#[derive(Debug)]
pub enum Source {
    /// In the upstream file, at `pointer`. The value is for a terminal only
    /// ([`SecretValue`] never prints it by accident).
    File { pointer: String, value: SecretValue },
    /// Not in the file: on the VM, where the upstream deployer keeps it.
    Vm(&'static str),
}

/// A secret's value: `Debug` hides it, so no log or panic message shows it.
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<hidden>)")
    }
}

/// A value of the result that the upstream file does not give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Its JSON pointer in the result.
    pub pointer: &'static str,
    pub value: String,
    pub why: String,
}

/// The books of one import.
#[derive(Debug, Default)]
pub struct Ledger {
    /// (pointer in the result, pointer in the upstream file) of every value
    /// carried over, and of the sections holding them.
    pub carried: Vec<(String, String)>,
    pub secrets: Vec<SecretToCreate>,
    /// Upstream values used without a place of their own in the result (the
    /// environment's name, a `use_tls_proxy` that is `false`).
    pub consumed: Vec<String>,
    /// Upstream values (a key, or a whole section) left behind, with the reason.
    pub dropped: Vec<(String, String)>,
    pub choices: Vec<Choice>,
    /// Upstream values that are invalid as what they become.
    pub problems: Vec<Diagnostic>,
}

impl Ledger {
    fn carry(&mut self, ours: impl Into<String>, upstream: impl Into<String>) {
        self.carried.push((ours.into(), upstream.into()));
    }

    fn drop(&mut self, upstream: impl Into<String>, reason: impl Into<String>) {
        self.dropped.push((upstream.into(), reason.into()));
    }

    /// A value the mapping does not know: the schema gained a key the
    /// mapping missed. Reported all the same, never dropped silently.
    pub fn drop_unmapped(&mut self, upstream: String) {
        self.drop(upstream, UNMAPPED);
    }

    fn choose(&mut self, pointer: &'static str, value: impl Into<String>, why: impl Into<String>) {
        self.choices.push(Choice {
            pointer,
            value: value.into(),
            why: why.into(),
        });
    }

    /// The reference that replaces the secret at `pointer` (the same in both files).
    fn secret(&mut self, pointer: &str, value: &str) -> Secret {
        let name = conventional_secret_name(pointer);
        self.carry(pointer, pointer);
        self.secrets.push(SecretToCreate {
            name,
            source: Source::File {
                pointer: pointer.to_string(),
                value: SecretValue(value.to_string()),
            },
        });
        Secret {
            secret: name.to_string(),
        }
    }

    /// The MySQL root password the upstream deployer generated when its file
    /// has none: each backup is verified by a restore, which needs it.
    fn generated_root_password(&mut self) -> Secret {
        const POINTER: &str = "/tracker/core/database/root_password";
        let name = conventional_secret_name(POINTER);
        self.choose(
            POINTER,
            format!("{{\"secret\": \"{name}\"}}"),
            "backups of MySQL need the root password; the upstream deployer generated one",
        );
        self.secrets.push(SecretToCreate {
            name,
            source: Source::Vm(
                "the value of MYSQL_ROOT_PASSWORD in /opt/torrust/.env on the VM (the upstream \
                 deployer generated it)",
            ),
        });
        Secret {
            secret: name.to_string(),
        }
    }

    /// The listener at `at` (the same in both files): its `bind_address`,
    /// or a problem located in the upstream file when it is not an address.
    fn listener(&mut self, document: &Document, at: &str, text: &str) -> SocketAddr {
        let pointer = format!("{at}/bind_address");
        self.carry(at, at);
        self.carry(pointer.clone(), pointer.clone());
        parse_address(&pointer, document.value_span(&pointer), text).unwrap_or_else(|problem| {
            self.problems.push(problem);
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    /// An HTTP service at `at`: its listener, and its domain when it is
    /// served over HTTPS.
    fn service(
        &mut self,
        document: &Document,
        at: &str,
        bind: &str,
        tls: &Tls,
    ) -> (SocketAddr, Option<String>) {
        (self.listener(document, at, bind), self.tls(at, tls))
    }

    /// A service's `domain` and `use_tls_proxy`: the domain it is served
    /// under over HTTPS, when it is. Without TLS the domain only named the
    /// service in upstream's URLs.
    fn tls(&mut self, at: &str, tls: &Tls) -> Option<String> {
        let domain = format!("{at}/domain");
        let proxy = format!("{at}/use_tls_proxy");
        if tls.use_tls_proxy.is_some() {
            self.consumed.push(proxy);
        }
        if let Some(name) = tls.tls_domain() {
            self.carry(domain.clone(), domain);
            return Some(name.to_string());
        }
        if tls.domain.is_some() {
            self.drop(
                domain,
                "without `use_tls_proxy` the upstream deployer serves plain HTTP and only shows \
                 the name in URLs; a domain in tracker-gitops means HTTPS",
            );
        }
        None
    }
}

/// Maps a typed upstream file whose text is `document` to the environment
/// `name`. The result is only meaningful when the ledger has no problems.
pub fn map(file: &upstream::File, name: &str, document: &Document) -> (EnvironmentFile, Ledger) {
    let mut ledger = Ledger::default();
    ledger.drop("/provider", PROVISIONING);
    if document.place("/provider/api_token").is_some() {
        ledger.drop(
            "/provider/api_token",
            "only for creating the server, and stored nowhere by import: revoke the token in \
             Hetzner's console when nothing else uses it",
        );
    }
    if document.place("/environment/instance_name").is_some() {
        ledger.drop(
            "/environment/instance_name",
            "the name of the VM the upstream deployer created: tracker-gitops never creates one",
        );
    }
    ledger.consumed.push("/environment/name".into());
    if file.environment.description.is_some() {
        ledger.carry("/description", "/environment/description");
    }
    let tracker = tracker(&file.tracker, file.backup.is_some(), document, &mut ledger);
    let prometheus = file.prometheus.as_ref().map(|p| {
        ledger.carry("/prometheus", "/prometheus");
        ledger.carry(
            "/prometheus/scrape_interval",
            "/prometheus/scrape_interval_in_secs",
        );
        Prometheus {
            image: default_prometheus_image(),
            scrape_interval: p.scrape_interval_in_secs,
            publish: default_prometheus_publish(),
            retention: None,
            persist_data: true,
        }
    });
    let grafana = file.grafana.as_ref().map(|g| grafana(g, &mut ledger));
    let backup = file.backup.as_ref().map(|b| backup(b, name, &mut ledger));
    let deploy = deploy(&file.ssh_credentials, name, &mut ledger);
    let mut result = EnvironmentFile {
        schema: Some(SCHEMA_REFERENCE.to_string()),
        description: file.environment.description.clone(),
        tracker,
        prometheus,
        grafana,
        https: None,
        backup,
        deploy,
        // A first deploy replaces no stack of ours: nothing to acknowledge.
        acknowledge_data_loss: Vec::new(),
    };
    let served = !result.domains().is_empty();
    result.https = file
        .https
        .as_ref()
        .and_then(|h| https(h, served, &mut ledger));
    (result, ledger)
}

fn tracker(
    tracker: &upstream::Tracker,
    backup: bool,
    document: &Document,
    ledger: &mut Ledger,
) -> Tracker {
    ledger.carry("/tracker", "/tracker");
    ledger.choose(
        "/tracker/image",
        TRACKER_IMAGE,
        "the upstream file cannot name an image; this is the one the upstream deployer runs, \
         with the metrics Prometheus reads. Pin it by digest",
    );
    ledger.choose(
        "/tracker/core/announce_policy",
        format!(
            "interval {UPSTREAM_ANNOUNCE_INTERVAL} s, interval_min {UPSTREAM_ANNOUNCE_INTERVAL} s"
        ),
        UPSTREAM_FIXED,
    );
    ledger.choose(
        "/tracker/core/tracker_policy/persistent_torrent_completed_stat",
        "true",
        UPSTREAM_FIXED,
    );
    ledger.carry("/tracker/core", "/tracker/core");
    ledger.carry("/tracker/core/private", "/tracker/core/private");
    let udp_trackers = tracker
        .udp_trackers
        .iter()
        .enumerate()
        .map(|(i, udp)| {
            let at = format!("/tracker/udp_trackers/{i}");
            if udp.domain.is_some() {
                ledger.drop(
                    format!("{at}/domain"),
                    "the upstream deployer only shows it in announce URLs; tracker-gitops has no \
                     such field",
                );
            }
            Listener {
                bind_address: ledger.listener(document, &at, &udp.bind_address),
            }
        })
        .collect();
    ledger.carry("/tracker/udp_trackers", "/tracker/udp_trackers");
    let http_trackers = tracker
        .http_trackers
        .iter()
        .enumerate()
        .map(|(i, http)| {
            let at = format!("/tracker/http_trackers/{i}");
            let (bind_address, domain) =
                ledger.service(document, &at, &http.bind_address, &http.tls);
            HttpTracker {
                bind_address,
                domain,
            }
        })
        .collect();
    ledger.carry("/tracker/http_trackers", "/tracker/http_trackers");
    let api = &tracker.http_api;
    let (bind_address, domain) =
        ledger.service(document, "/tracker/http_api", &api.bind_address, &api.tls);
    let http_api = HttpApi {
        bind_address,
        admin_token: ledger.secret("/tracker/http_api/admin_token", &api.admin_token),
        domain,
    };
    let health = &tracker.health_check_api;
    let (bind_address, domain) = ledger.service(
        document,
        "/tracker/health_check_api",
        &health.bind_address,
        &health.tls,
    );
    let health_check_api = HealthCheckApi {
        bind_address,
        domain,
    };
    Tracker {
        image: TRACKER_IMAGE.to_string(),
        config_schema: None,
        log_level: LogLevel::Info,
        core: Core {
            private: tracker.core.private,
            // Upstream always writes `listed = false`.
            listed: false,
            announce_policy: AnnouncePolicy {
                interval: UPSTREAM_ANNOUNCE_INTERVAL,
                interval_min: UPSTREAM_ANNOUNCE_INTERVAL,
            },
            tracker_policy: TrackerPolicy {
                persistent_torrent_completed_stat: true,
            },
            database: database(&tracker.core.database, backup, ledger),
        },
        udp_trackers,
        http_trackers,
        http_api,
        health_check_api,
    }
}

/// The database; `backup`: MySQL backups need the root password.
fn database(database: &upstream::Database, backup: bool, ledger: &mut Ledger) -> Database {
    const AT: &str = "/tracker/core/database";
    ledger.carry(AT, AT);
    ledger.carry(format!("{AT}/driver"), format!("{AT}/driver"));
    ledger.carry(format!("{AT}/database_name"), format!("{AT}/database_name"));
    match database {
        upstream::Database::Sqlite { database_name } => Database::Sqlite {
            database_name: database_name.clone(),
        },
        upstream::Database::Mysql {
            host,
            port,
            database_name,
            username,
            password,
            root_password,
        } => {
            ledger.carry(format!("{AT}/host"), format!("{AT}/host"));
            ledger.carry(format!("{AT}/port"), format!("{AT}/port"));
            ledger.carry(format!("{AT}/user"), format!("{AT}/username"));
            let password = ledger.secret(&format!("{AT}/password"), password);
            let root_password = match root_password {
                Some(value) => Some(ledger.secret(&format!("{AT}/root_password"), value)),
                None if backup => Some(ledger.generated_root_password()),
                None => None,
            };
            Database::Mysql(Mysql {
                host: host.clone(),
                port: *port,
                database_name: database_name.clone(),
                user: username.clone(),
                password,
                root_password,
                image: None,
            })
        }
    }
}

fn grafana(grafana: &upstream::Grafana, ledger: &mut Ledger) -> Grafana {
    ledger.carry("/grafana", "/grafana");
    ledger.carry("/grafana/admin_user", "/grafana/admin_user");
    let admin_password = ledger.secret("/grafana/admin_password", &grafana.admin_password);
    let domain = ledger.tls("/grafana", &grafana.tls);
    let publish = if domain.is_some() {
        // Served through Caddy: never written (see `without_grafana_publish`).
        default_grafana_publish()
    } else {
        ledger.choose(
            "/grafana/publish",
            "0.0.0.0:3000",
            "where the upstream deployer publishes Grafana without TLS (on every interface); \
             this tool's default is 127.0.0.1:3000",
        );
        SocketAddr::from(UPSTREAM_GRAFANA_PUBLISH)
    };
    Grafana {
        image: default_grafana_image(),
        admin_user: grafana.admin_user.clone(),
        admin_password,
        publish,
        domain,
    }
}

/// The `https` section, when a service is served over HTTPS (else it would
/// serve nothing, which this tool refuses).
fn https(https: &upstream::Https, served: bool, ledger: &mut Ledger) -> Option<Https> {
    if !served {
        ledger.drop(
            "/https",
            "no service has `use_tls_proxy`: nothing is served over HTTPS",
        );
        return None;
    }
    ledger.carry("/https", "/https");
    ledger.carry("/https/email", "/https/admin_email");
    ledger.carry("/https/ca", "/https/use_staging");
    Some(Https {
        email: https.admin_email.clone(),
        ca: if https.use_staging {
            CA_STAGING
        } else {
            CA_PRODUCTION
        }
        .to_string(),
        ca_root: None,
        image: default_caddy_image(),
    })
}

/// Backups: upstream keeps them for a number of days, this tool a number of
/// backups, so `keep` is the count that covers those days.
fn backup(backup: &upstream::Backup, name: &str, ledger: &mut Ledger) -> Backup {
    ledger.carry("/backup", "/backup");
    ledger.carry("/backup/schedule", "/backup/schedule");
    ledger.consumed.push("/backup/retention_days".into());
    let days = backup.retention_days.max(1);
    let (keep, why) = match runs_per_day(&backup.schedule) {
        Some(runs) => (
            days.saturating_mul(runs),
            format!("{days} days of `retention_days` × {runs} backups a day"),
        ),
        None => (
            days,
            format!(
                "{days} days of `retention_days`, at most one backup a day assumed: the \
                 schedule does not run every day alike; check it"
            ),
        ),
    };
    let keep = keep.clamp(1, MAX_BACKUPS_KEPT);
    ledger.choose("/backup/keep", keep.to_string(), why);
    let path = format!("/srv/tracker-gitops/{name}/backups");
    ledger.choose(
        "/backup/path",
        path.clone(),
        "beside the checkout, where no deploy removes them; the upstream deployer keeps its \
         own in /opt/torrust/storage/backup",
    );
    Backup {
        schedule: backup.schedule.clone(),
        keep,
        path,
        image: default_backup_image(),
    }
}

fn deploy(ssh: &upstream::SshCredentials, name: &str, ledger: &mut Ledger) -> Deploy {
    ledger.carry("/deploy/user", "/ssh_credentials/username");
    ledger.carry("/deploy/port", "/ssh_credentials/port");
    ledger.drop(
        "/ssh_credentials/private_key_path",
        "tracker-gitops reads the deploy key itself, never a path, from the CI secret \
         TRACKER_GITOPS_SSH_KEY: store that private key there",
    );
    ledger.drop(
        "/ssh_credentials/public_key_path",
        "nothing to configure: the VM's user already authorizes that key",
    );
    ledger.choose(
        "/deploy/host",
        PLACEHOLDER_HOST,
        "a placeholder: the upstream file has no address (the upstream deployer keeps the VM's \
         IP in its own state); set the VM's",
    );
    ledger.choose(
        "/deploy/host_key",
        placeholder::HOST_KEY,
        "a placeholder: set the VM's SSH host key (see \"Preparing a VM\")",
    );
    ledger.choose(
        "/deploy/path",
        format!("/srv/tracker-gitops/{name}"),
        "this tool's own directory on the VM, beside the upstream deployer's /opt/torrust (see \
         the migration guide)",
    );
    Deploy {
        host: PLACEHOLDER_HOST.to_string(),
        port: ssh.port,
        user: ssh.username.clone(),
        host_key: placeholder::HOST_KEY.to_string(),
        path: format!("/srv/tracker-gitops/{name}"),
        branch: None,
        repository: None,
    }
}
