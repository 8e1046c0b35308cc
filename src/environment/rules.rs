//! Rules the schema cannot express, each a small function named after what it
//! requires, run from one list. Each produces its own diagnostic, positioned
//! through the document's pointer index.

use std::net::SocketAddr;

use serde_json::Value;

use super::Environment;
use super::document::Document;
use super::image::{ImageRef, tracker_image_facts};
use super::model::{ConfigSchema, Database, EnvironmentFile, TlsService};
use super::placeholder;
use crate::diagnostic::{Code, Diagnostic};
use crate::stack::{Stack, loss};

/// The environment name is the file stem: `[a-z][a-z0-9-]*`, no trailing or double dash.
pub fn check_name(name: &str) -> Option<Diagnostic> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name.len() <= 63;
    (!valid).then(|| {
        let suggestion: String = name
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let suggestion = suggestion
            .split('-')
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        Diagnostic::error(
            Code::InvalidEnvironmentName,
            "",
            0..0,
            format!(
                "environment name {name:?} (the file name) must be lowercase letters, digits and \
                 single dashes, start with a letter, and be at most 63 characters"
            ),
        )
        .with_hint(format!(
            "rename the file, for example to `{suggestion}.json`"
        ))
    })
}

/// Secret names that would be read from, or land in, a variable with another
/// meaning: CI credentials (the deploy key, GitHub's token) would be shipped to
/// the VM, and shell, dynamic-loader or tool variables would change how the
/// deploy runs. The one list: the remote script gets it in its prelude
/// (`deploy::protocol`) and refuses the same names.
pub const RESERVED_PREFIXES: &[&str] = &[
    "TRACKER_GITOPS_",
    "GITHUB_",
    "RUNNER_",
    "ACTIONS_",
    "LC_",
    "LD_",
    "BASH",
    "DOCKER_",
    "COMPOSE_",
    "BUILDKIT_",
    "GIT_",
    "SSH_",
    "TG_",
    "XDG_",
    "MALLOC_",
    "GLIBC_",
    "COMP_",
    "READLINE_",
    "HIST",
];
pub const RESERVED_NAMES: &[&str] = &[
    // CI
    "CI",
    // the process environment every tool reads
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "PWD",
    "OLDPWD",
    "TMPDIR",
    "TERM",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TZDIR",
    "PAGER",
    "EDITOR",
    "VISUAL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "FTP_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    // the dynamic loader and the C library
    "GCONV_PATH",
    "GETCONF_DIR",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "NLSPATH",
    "RES_OPTIONS",
    // the shell
    "IFS",
    "ENV",
    "CDPATH",
    "SHELLOPTS",
    "POSIXLY_CORRECT",
    "FUNCNEST",
    "FUNCNAME",
    "TMOUT",
    "GLOBIGNORE",
    "EXECIGNORE",
    "FIGNORE",
    "PROMPT_COMMAND",
    "PS0",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "TIMEFORMAT",
    "IGNOREEOF",
    "INPUTRC",
    "MAIL",
    "MAILCHECK",
    "MAILPATH",
    "FCEDIT",
    "HOSTFILE",
    "HOSTNAME",
    "HOSTTYPE",
    "MACHTYPE",
    "OSTYPE",
    "OPTARG",
    "OPTERR",
    "OPTIND",
    "PPID",
    "UID",
    "EUID",
    "GROUPS",
    "RANDOM",
    "SRANDOM",
    "SECONDS",
    "EPOCHSECONDS",
    "EPOCHREALTIME",
    "LINENO",
    "REPLY",
    "SHLVL",
    "PIPESTATUS",
    "DIRSTACK",
    "COPROC",
    "MAPFILE",
    "COLUMNS",
    "LINES",
    "CHILD_MAX",
    "COMPREPLY",
    "TEXTDOMAIN",
    "TEXTDOMAINDIR",
];

/// Whether a secret may not take this name (see [`RESERVED_NAMES`]).
fn reserved_secret_name(name: &str) -> bool {
    RESERVED_NAMES.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Every socket address in the file, as (pointer, text).
fn address_pointers(value: &Value) -> Vec<(String, &str)> {
    let mut found = Vec::new();
    let mut add = |pointer: String| {
        if let Some(text) = value.pointer(&pointer).and_then(Value::as_str) {
            found.push((pointer, text));
        }
    };
    for list in ["udp_trackers", "http_trackers"] {
        let count = value
            .pointer(&format!("/tracker/{list}"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for i in 0..count {
            add(format!("/tracker/{list}/{i}/bind_address"));
        }
    }
    add("/tracker/http_api/bind_address".into());
    add("/tracker/health_check_api/bind_address".into());
    add("/prometheus/publish".into());
    add("/grafana/publish".into());
    found
}

/// Addresses must parse as `ip:port` with a non-zero port. Runs on the raw value,
/// before typing, so that each bad address gets its own positioned error.
pub fn bad_addresses(document: &Document) -> Vec<Diagnostic> {
    address_pointers(&document.value)
        .into_iter()
        .filter_map(|(pointer, text)| {
            parse_address(&pointer, document.value_span(&pointer), text).err()
        })
        .collect()
}

/// A listener or publish address: `ip:port`, the port not zero. The error is
/// about the value at `pointer`, which spans `span`.
pub fn parse_address(
    pointer: &str,
    span: std::ops::Range<usize>,
    text: &str,
) -> Result<SocketAddr, Diagnostic> {
    match text.parse::<SocketAddr>() {
        Ok(address) if address.port() == 0 => {
            Err(
                Diagnostic::error(Code::PortZero, pointer, span, "port 0 is not allowed here")
                    .with_hint("choose a fixed port: clients and the firewall need to know it"),
            )
        }
        Ok(address) => Ok(address),
        Err(_) => Err(Diagnostic::error(
            Code::InvalidAddress,
            pointer,
            span,
            format!("{:?} is not an `ip:port` address", truncate(text)),
        )
        .with_hint("for example \"0.0.0.0:6969\", \"127.0.0.1:9090\" or \"[::]:7070\"")),
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(60).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Tcp,
    Udp,
}

struct Socket {
    service: &'static str,
    pointer: String,
    address: SocketAddr,
    protocol: Protocol,
    published: bool,
}

fn sockets(env: &EnvironmentFile) -> Vec<Socket> {
    let tracker = &env.tracker;
    let mut sockets = Vec::new();
    let mut push = |service, pointer: String, address, protocol, published| {
        sockets.push(Socket {
            service,
            pointer,
            address,
            protocol,
            published,
        })
    };
    for (i, l) in tracker.udp_trackers.iter().enumerate() {
        let pointer = format!("/tracker/udp_trackers/{i}/bind_address");
        push("tracker", pointer, l.bind_address, Protocol::Udp, true);
    }
    // A service served over HTTPS is reached through Caddy, not on its own port.
    for (i, l) in tracker.http_trackers.iter().enumerate() {
        let pointer = format!("/tracker/http_trackers/{i}/bind_address");
        let published = !env.behind_tls(&l.domain);
        push("tracker", pointer, l.bind_address, Protocol::Tcp, published);
    }
    let api = tracker.http_api.bind_address;
    push(
        "tracker",
        "/tracker/http_api/bind_address".into(),
        api,
        Protocol::Tcp,
        !env.behind_tls(&tracker.http_api.domain),
    );
    let health = tracker.health_check_api.bind_address;
    let pointer = "/tracker/health_check_api/bind_address".into();
    push("tracker", pointer, health, Protocol::Tcp, false);
    if let Database::Mysql(mysql) = &tracker.core.database {
        if mysql.bundled() {
            let address = SocketAddr::from(([0, 0, 0, 0], mysql.port));
            let pointer = "/tracker/core/database/port".into();
            push("mysql", pointer, address, Protocol::Tcp, false);
        }
    }
    if let Some(prometheus) = &env.prometheus {
        let pointer = "/prometheus/publish".into();
        push(
            "prometheus",
            pointer,
            prometheus.publish,
            Protocol::Tcp,
            true,
        );
    }
    if let Some(grafana) = &env.grafana {
        push(
            "grafana",
            "/grafana/publish".into(),
            grafana.publish,
            Protocol::Tcp,
            !env.behind_tls(&grafana.domain),
        );
    }
    sockets
}

/// Whether two sockets cannot both be bound. Inside one container published
/// listeners bind every interface, so only the port counts there; on the host,
/// an unspecified address overlaps every address of its family.
fn conflict(a: &Socket, b: &Socket) -> bool {
    if a.protocol != b.protocol || a.address.port() != b.address.port() {
        return false;
    }
    if a.service == b.service {
        return true;
    }
    a.published
        && b.published
        && (a.address.ip() == b.address.ip()
            || (a.address.is_ipv4() == b.address.is_ipv4()
                && (a.address.ip().is_unspecified() || b.address.ip().is_unspecified())))
}

/// A rule over a typed, schema-valid file: pushes what it finds onto `found`.
type Rule = fn(&EnvironmentFile, &Document, &mut Vec<Diagnostic>);

/// The rules over a typed file, in the order their diagnostics are found.
const RULES: &[Rule] = &[
    listener_conflicts,
    reserved_secret_names,
    grafana_needs_prometheus,
    known_config_schema,
    metrics_for_prometheus,
    interval_min_within_interval,
    mysql_user_not_root,
    external_mysql_settings,
    backup_schedule,
    backup_outside_checkout,
    backup_database,
    pinned_images,
    valid_branch_name,
    possible_acknowledgements,
    configured,
    authenticated_when_published,
    https_serves_a_domain,
    domains_need_https,
    valid_domains,
    one_service_per_domain,
    no_plain_port_behind_tls,
    https_ports_free,
    one_reverse_proxy_setting,
];

/// Applies every cross-field rule to a typed, schema-valid file.
pub fn apply(env: &EnvironmentFile, document: &Document) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for rule in RULES {
        rule(env, document, &mut found);
    }
    found
}

/// No two listeners that cannot both bind their port.
fn listener_conflicts(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    let span = |pointer: &str| document.value_span(pointer);
    let sockets = sockets(env);
    for (i, a) in sockets.iter().enumerate() {
        for b in sockets[i + 1..].iter().filter(|b| conflict(a, b)) {
            // Report at whichever comes later in the file, naming the earlier one.
            let (earlier, later) = if span(&a.pointer).start <= span(&b.pointer).start {
                (a, b)
            } else {
                (b, a)
            };
            let (line, _) = line_column(document, &earlier.pointer);
            let protocol = match later.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
            };
            found.push(
                Diagnostic::error(
                    Code::PortConflict,
                    later.pointer.clone(),
                    span(&later.pointer),
                    format!(
                        "{} {protocol} port {} is already used by `{}` (line {line})",
                        later.service,
                        later.address.port(),
                        earlier.pointer
                    ),
                )
                .with_hint("give every listener its own port"),
            );
        }
    }
}

/// No secret named like a variable of CI, the shell or a tool.
fn reserved_secret_names(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    for (pointer, name) in env.secret_references() {
        if reserved_secret_name(name) {
            found.push(
                Diagnostic::error(
                    Code::ReservedSecretName,
                    pointer,
                    document.value_span(pointer),
                    format!("`{name}` cannot be a secret name"),
                )
                .with_hint(
                    "it names a variable of CI, the shell or a tool; choose your own, \
                     e.g. TRACKER_ADMIN_TOKEN",
                ),
            );
        }
    }
}

/// Grafana shows what Prometheus collects.
fn grafana_needs_prometheus(
    env: &EnvironmentFile,
    document: &Document,
    found: &mut Vec<Diagnostic>,
) {
    if env.grafana.is_some() && env.prometheus.is_none() {
        found.push(
            Diagnostic::error(
                Code::GrafanaWithoutPrometheus,
                "/grafana",
                document.object_span("/grafana"),
                "`grafana` needs `prometheus`",
            )
            .with_hint(
                "Grafana shows what Prometheus collects: add a `prometheus` section or remove \
                 `grafana`",
            ),
        );
    }
}

/// The tracker's configuration schema is known from its image, or stated,
/// and the two agree.
fn known_config_schema(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    let tracker = &env.tracker;
    match (tracker_image_facts(&tracker.image), tracker.config_schema) {
        (None, None) => found.push(
            Diagnostic::error(
                Code::UnknownConfigSchema,
                "/tracker/image",
                document.value_span("/tracker/image"),
                format!("cannot tell which configuration schema `{}` takes", tracker.image),
            )
            .with_hint("add \"config_schema\": \"2.0.0\" (3.0.0 release) or \"3.0.0\" (develop builds from late August 2026 on)"),
        ),
        (Some(facts), Some(stated)) if facts.config_schema != stated => found.push(
            Diagnostic::error(
                Code::ConfigSchemaMismatch,
                "/tracker/config_schema",
                document.value_span("/tracker/config_schema"),
                format!(
                    "`{}` takes configuration schema {}, not {}",
                    tracker.image,
                    schema_name(facts.config_schema),
                    schema_name(stated)
                ),
            )
            .with_hint("remove `config_schema`: it is known for this image"),
        ),
        _ => {}
    }
}

/// Prometheus needs a tracker image known to serve metrics.
fn metrics_for_prometheus(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    let image = &env.tracker.image;
    if let (Some(facts), Some(_)) = (tracker_image_facts(image), &env.prometheus) {
        if !facts.metrics {
            found.push(
                Diagnostic::error(
                    Code::NoMetrics,
                    "/prometheus",
                    document.object_span("/prometheus"),
                    format!("`{image}` has no metrics endpoints for Prometheus to scrape"),
                )
                .with_hint("the 3.0.0 release serves JSON stats only: use a `develop` build (pinned by digest) or remove `prometheus`"),
            );
        }
    }
}

/// Clients may announce at most every `interval_min`, so it cannot exceed `interval`.
fn interval_min_within_interval(
    env: &EnvironmentFile,
    document: &Document,
    found: &mut Vec<Diagnostic>,
) {
    let policy = &env.tracker.core.announce_policy;
    if policy.interval_min > policy.interval {
        let pointer = "/tracker/core/announce_policy/interval_min";
        found.push(
            Diagnostic::error(
                Code::IntervalMinAboveInterval,
                pointer,
                document.value_span(pointer),
                format!(
                    "`interval_min` ({}) is greater than `interval` ({})",
                    policy.interval_min, policy.interval
                ),
            )
            .with_hint("clients may not announce more often than `interval_min`; keep it at or below `interval`"),
        );
    }
}

/// The tracker connects to MySQL as a user of its own.
fn mysql_user_not_root(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    if let Database::Mysql(mysql) = &env.tracker.core.database {
        if mysql.user == "root" {
            let pointer = "/tracker/core/database/user";
            found.push(
                Diagnostic::error(
                    Code::MysqlRootUser,
                    pointer,
                    document.value_span(pointer),
                    "the tracker must not connect to MySQL as `root`",
                )
                .with_hint(
                    "use a dedicated user, for example \"torrust\"; the root password \
                     (optional) is only for administration",
                ),
            );
        }
    }
}

/// Settings of the MySQL service run by the stack, written for an external server.
fn external_mysql_settings(
    env: &EnvironmentFile,
    document: &Document,
    found: &mut Vec<Diagnostic>,
) {
    let Database::Mysql(mysql) = &env.tracker.core.database else {
        return;
    };
    if mysql.bundled() {
        return;
    }
    for key in ["image", "root_password"] {
        let pointer = format!("/tracker/core/database/{key}");
        if document.place(&pointer).is_some() {
            found.push(
                Diagnostic::error(
                    Code::ExternalMysqlSetting,
                    pointer.clone(),
                    document.key_span(&pointer),
                    format!("`{key}` only applies to the MySQL service run by the stack (host \"mysql\")"),
                )
                .with_hint(format!("remove `{key}`, or set `host` to \"mysql\" to run MySQL in the stack")),
            );
        }
    }
}

/// The schedule is one busybox crond runs.
fn backup_schedule(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    let Some(backup) = &env.backup else { return };
    if let Some(problem) = super::cron::problem(&backup.schedule) {
        let pointer = "/backup/schedule";
        found.push(
            Diagnostic::error(
                Code::InvalidSchedule,
                pointer,
                document.value_span(pointer),
                format!("`schedule` is not a cron expression: {problem}"),
            )
            .with_hint(
                "five fields, in UTC: minute hour day-of-month month day-of-week, for example \
                 \"17 3 * * *\" (03:17 every day)",
            ),
        );
    }
}

/// Backups live where no deploy removes them: every deploy deletes what the
/// commit does not hold from `<deploy.path>/checkout`.
fn backup_outside_checkout(
    env: &EnvironmentFile,
    document: &Document,
    found: &mut Vec<Diagnostic>,
) {
    let Some(backup) = &env.backup else { return };
    let components = |path: &str| -> Vec<String> {
        path.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_string)
            .collect()
    };
    let mut checkout = components(&env.deploy.path);
    checkout.push("checkout".into());
    let path = components(&backup.path);
    if path.starts_with(&checkout) || checkout.starts_with(&path) {
        let pointer = "/backup/path";
        found.push(
            Diagnostic::error(
                Code::BackupInCheckout,
                pointer,
                document.value_span(pointer),
                format!(
                    "backups in `{}` would be deleted by the next deploy: it cleans \
                     {}/checkout",
                    backup.path,
                    env.deploy.path.trim_end_matches('/')
                ),
            )
            .with_hint(format!(
                "keep them beside the checkout, for example \"{}/backups\", or on another disk",
                env.deploy.path.trim_end_matches('/')
            )),
        );
    }
}

/// A MySQL backup is verified by restoring it into a scratch database of the
/// stack's own server, which takes its root account.
fn backup_database(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    let (Some(_), Database::Mysql(mysql)) = (&env.backup, &env.tracker.core.database) else {
        return;
    };
    let diagnostic = if !mysql.bundled() {
        let pointer = "/tracker/core/database/host";
        Diagnostic::error(
            Code::BackupExternalMysql,
            "/backup",
            document.key_span("/backup"),
            format!(
                "`backup` takes backups of the stack's own MySQL, not of the external server `{}`",
                mysql.host
            ),
        )
        .with_hint(format!(
            "back up the external server where it runs, and remove `backup`; or run MySQL \
             in the stack (`host` \"mysql\", line {})",
            line_column(document, pointer).0
        ))
    } else if mysql.root_password.is_none() {
        Diagnostic::error(
            Code::BackupWithoutRootPassword,
            "/tracker/core/database",
            document.key_span("/tracker/core/database"),
            "a backup of MySQL needs `root_password`: each backup is verified by a restore \
             into a scratch database",
        )
        .with_hint("add \"root_password\": { \"secret\": \"MYSQL_ROOT_PASSWORD\" }")
    } else {
        return;
    };
    found.push(diagnostic);
}

/// A warning for every image written with a tag that can move.
fn pinned_images(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    let mut images = vec![("/tracker/image", env.tracker.image.as_str())];
    if let Database::Mysql(mysql) = &env.tracker.core.database {
        if let Some(image) = &mysql.image {
            images.push(("/tracker/core/database/image", image));
        }
    }
    if let Some(prometheus) = &env.prometheus {
        images.push(("/prometheus/image", &prometheus.image));
    }
    if let Some(grafana) = &env.grafana {
        images.push(("/grafana/image", &grafana.image));
    }
    if let Some(backup) = &env.backup {
        images.push(("/backup/image", &backup.image));
    }
    if let Some(https) = &env.https {
        images.push(("/https/image", &https.image));
    }
    for (pointer, image) in images {
        if document.place(pointer).is_some() && ImageRef::parse(image).is_mutable() {
            found.push(
                Diagnostic::warning(
                    Code::MovingTag,
                    pointer,
                    document.value_span(pointer),
                    format!("`{image}` is a moving tag: a redeploy may run a different build"),
                )
                .with_hint("pin the image by digest (`name@sha256:…`) so that what was reviewed is what runs"),
            );
        }
    }
}

/// An explicit deploy branch is a name git accepts.
fn valid_branch_name(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    if let Some(branch) = &env.deploy.branch {
        if !git2::Branch::name_is_valid(branch).unwrap_or(false) {
            let pointer = "/deploy/branch";
            found.push(
                Diagnostic::error(
                    Code::InvalidBranchName,
                    pointer,
                    document.value_span(pointer),
                    format!("{branch:?} is not a valid git branch name"),
                )
                .with_hint("for example \"deploy/production\""),
            );
        }
    }
}

/// Each acknowledged data loss leads to what the file has: acknowledging
/// `database-driver:mysql->sqlite3` in a file still on MySQL names a change
/// that is not happening, and would accept it, unseen, when it does.
fn possible_acknowledgements(
    env: &EnvironmentFile,
    document: &Document,
    found: &mut Vec<Diagnostic>,
) {
    if env.acknowledge_data_loss.is_empty() {
        return;
    }
    let stack = Stack::build(&Environment {
        name: String::new(),
        path: Default::default(),
        file: env.clone(),
    });
    for (i, id) in env.acknowledge_data_loss.iter().enumerate() {
        // The schema checked the form: `None` cannot happen here.
        let Some(Err(problem)) = loss::possible(id, &stack) else {
            continue;
        };
        let pointer = format!("/acknowledge_data_loss/{i}");
        found.push(
            Diagnostic::error(
                Code::ImpossibleAcknowledgement,
                pointer.clone(),
                document.value_span(&pointer),
                format!("`{id}` acknowledges a change this file does not make: {problem}"),
            )
            .with_hint(
                "name the loss exactly as the plan shows it, or remove the acknowledgement \
                 (one left in the file would accept that loss again later)",
            ),
        );
    }
}

/// A warning for every VM setting still at the placeholder `init` wrote.
fn configured(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    for placeholder in placeholder::in_deploy(&env.deploy) {
        let pointer = placeholder.pointer;
        let key = pointer.trim_start_matches('/').replace('/', ".");
        found.push(
            Diagnostic::warning(
                Code::NotConfigured,
                pointer,
                document.value_span(pointer),
                format!("`{key}` is not configured yet: it is {}", placeholder.what),
            )
            .with_hint(if pointer == "/deploy/host_key" {
                "put the VM's host key here, read on the VM itself: `ssh-keygen -lf \
                 /etc/ssh/ssh_host_ed25519_key.pub`; deploy refuses the placeholder"
            } else {
                "put your VM's DNS name or address here; deploy refuses an example host"
            }),
        );
    }
}

/// A warning for a service without authentication published beyond loopback:
/// Prometheus's UI and API answer anyone who reaches the port. Grafana asks
/// for a login, so it is not one of them.
fn authenticated_when_published(
    env: &EnvironmentFile,
    document: &Document,
    found: &mut Vec<Diagnostic>,
) {
    let Some(prometheus) = &env.prometheus else {
        return;
    };
    let address = prometheus.publish;
    if address.ip().is_loopback() {
        return;
    }
    let pointer = "/prometheus/publish";
    // Left out, the publish address is the default (loopback): only a written one can be here.
    found.push(
        Diagnostic::warning(
            Code::UnauthenticatedService,
            pointer,
            document.value_span(pointer),
            format!(
                "Prometheus has no authentication: on {address} it answers anyone who reaches \
                 the VM"
            ),
        )
        .with_hint(format!(
            "publish it on \"127.0.0.1:{port}\" and open it through an SSH tunnel \
             (`ssh -N -L {port}:127.0.0.1:{port} {user}@{host}`, then http://127.0.0.1:{port}), \
             or read the metrics through Grafana, which asks for a login (give `grafana` a \
             `domain` for HTTPS)",
            port = address.port(),
            user = env.deploy.user,
            host = env.deploy.host,
        )),
    );
}

/// `https` serves at least one service.
fn https_serves_a_domain(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    if env.https.is_some() && env.domains().is_empty() {
        found.push(
            Diagnostic::error(
                Code::HttpsWithoutDomain,
                "/https",
                document.object_span("/https"),
                "`https` is set but no service has a `domain` to serve over HTTPS",
            )
            .with_hint(
                "add a `domain` to an HTTP tracker, `http_api`, `health_check_api` or \
                 `grafana`, or remove `https`",
            ),
        );
    }
}

/// A `domain` turns HTTPS on, which needs the `https` section.
fn domains_need_https(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    if env.https.is_some() {
        return;
    }
    for (service, domain) in env.domains() {
        let pointer = service.domain_pointer();
        found.push(
            Diagnostic::error(
                Code::DomainWithoutHttps,
                pointer.clone(),
                document.value_span(&pointer),
                format!(
                    "`{domain}` would serve {} over HTTPS, but there is no `https` section",
                    service.label()
                ),
            )
            .with_hint(
                "add \"https\": { \"email\": \"you@example.org\" } (the ACME account for its \
                 certificate), or remove the `domain`",
            ),
        );
    }
}

/// Why `domain` cannot be a certificate's name, if it cannot.
fn domain_problem(domain: &str) -> Option<String> {
    if let Some(label) = domain.split('.').find(|label| label.len() > 63) {
        return Some(format!(
            "its label `{}…` is longer than 63 characters",
            &label[..20]
        ));
    }
    let top = domain.rsplit('.').next().unwrap_or_default();
    if top.chars().all(|c| c.is_ascii_digit()) {
        return Some("it looks like an IP address: ACME CAs certify host names".into());
    }
    None
}

/// Every `domain` is a host name a CA can certify.
fn valid_domains(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    for (service, domain) in env.domains() {
        if let Some(problem) = domain_problem(domain) {
            let pointer = service.domain_pointer();
            found.push(
                Diagnostic::error(
                    Code::InvalidDomain,
                    pointer.clone(),
                    document.value_span(&pointer),
                    format!("`{}` is not a valid host name: {problem}", truncate(domain)),
                )
                .with_hint(
                    "use the DNS name clients reach the VM by, e.g. \"tracker.example.org\"",
                ),
            );
        }
    }
}

/// Whether two services can be told apart on one domain by their paths:
/// one HTTP tracker (`/announce`, `/scrape`), the REST API (`/api/`) and the
/// health check (`/health_check`). Grafana and a second tracker take every path.
fn can_share(a: TlsService, b: TlsService) -> bool {
    let tracker_or_api = |s| !matches!(s, TlsService::Grafana);
    tracker_or_api(a)
        && tracker_or_api(b)
        && !matches!(
            (a, b),
            (TlsService::HttpTracker(_), TlsService::HttpTracker(_))
        )
}

/// No two services on one domain, unless their paths tell them apart.
fn one_service_per_domain(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    let domains = env.domains();
    for (i, (later, domain)) in domains.iter().enumerate() {
        let taken = domains[..i].iter().find(|(earlier, other)| {
            other.eq_ignore_ascii_case(domain) && !can_share(*earlier, *later)
        });
        if let Some((earlier, _)) = taken {
            let pointer = later.domain_pointer();
            let (line, _) = line_column(document, &earlier.domain_pointer());
            found.push(
                Diagnostic::error(
                    Code::DomainCollision,
                    pointer.clone(),
                    document.value_span(&pointer),
                    format!(
                        "`{domain}` already serves {} (line {line})",
                        earlier.label()
                    ),
                )
                .with_hint(
                    "one HTTP tracker, the REST API and the health check can share a domain \
                     (their paths differ); Grafana and every other HTTP tracker need their own",
                ),
            );
        }
    }
}

/// A service behind HTTPS is not also published in plain HTTP.
fn no_plain_port_behind_tls(
    env: &EnvironmentFile,
    document: &Document,
    found: &mut Vec<Diagnostic>,
) {
    let pointer = "/grafana/publish";
    let behind_tls = env
        .grafana
        .as_ref()
        .is_some_and(|g| env.behind_tls(&g.domain));
    if behind_tls && document.place(pointer).is_some() {
        found.push(
            Diagnostic::error(
                Code::PublishedBehindTls,
                pointer,
                document.key_span(pointer),
                "Grafana has a `domain`, so it is served over HTTPS only: its plain port would \
                 still be published",
            )
            .with_hint("remove `publish`: Grafana is then reached at https://<domain>/ only"),
        );
    }
}

/// Caddy takes the host's ports 80 and 443 (TCP): no published listener may.
fn https_ports_free(env: &EnvironmentFile, document: &Document, found: &mut Vec<Diagnostic>) {
    if env.https.is_none() {
        return;
    }
    let taken = sockets(env).into_iter().filter(|s| {
        s.published && s.protocol == Protocol::Tcp && [80, 443].contains(&s.address.port())
    });
    for socket in taken {
        found.push(
            Diagnostic::error(
                Code::HttpsPortConflict,
                socket.pointer.clone(),
                document.value_span(&socket.pointer),
                format!(
                    "tcp port {} is Caddy's: with `https` it serves ports 80 and 443 of the host",
                    socket.address.port()
                ),
            )
            .with_hint(
                "choose another port, or give the service a `domain` so that Caddy serves it",
            ),
        );
    }
}

/// Schema 2.0.0 has one `on_reverse_proxy` for every HTTP tracker: behind
/// Caddy all of them, or none, since the tracker then requires the proxy's
/// `X-Forwarded-For` header.
fn one_reverse_proxy_setting(
    env: &EnvironmentFile,
    document: &Document,
    found: &mut Vec<Diagnostic>,
) {
    let tracker = &env.tracker;
    let schema = tracker
        .config_schema
        .or_else(|| tracker_image_facts(&tracker.image).map(|f| f.config_schema));
    let behind_tls = tracker
        .http_trackers
        .iter()
        .filter(|l| env.behind_tls(&l.domain))
        .count();
    if schema != Some(ConfigSchema::V2) || behind_tls == 0 {
        return;
    }
    for (i, l) in tracker.http_trackers.iter().enumerate() {
        if !env.behind_tls(&l.domain) {
            let pointer = format!("/tracker/http_trackers/{i}");
            found.push(
                Diagnostic::error(
                    Code::MixedReverseProxy,
                    pointer.clone(),
                    document.object_span(&pointer),
                    "this HTTP tracker has no `domain` while another is served over HTTPS: \
                     configuration schema 2.0.0 puts every HTTP tracker behind the proxy or none",
                )
                .with_hint(
                    "give every HTTP tracker a `domain` (schema 3.0.0 images, e.g. `develop`, \
                     can mix them)",
                ),
            );
        }
    }
}

fn schema_name(schema: super::model::ConfigSchema) -> &'static str {
    match schema {
        super::model::ConfigSchema::V2 => "2.0.0",
        super::model::ConfigSchema::V3 => "3.0.0",
    }
}

fn line_column(document: &Document, pointer: &str) -> (usize, usize) {
    document.line_column(document.value_span(pointer).start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_file_stem_rules() {
        for good in ["production", "eu-1", "a"] {
            assert!(check_name(good).is_none(), "{good}");
        }
        for bad in ["Prod", "1st", "a--b", "a-", "with_underscore", ""] {
            assert!(check_name(bad).is_some(), "{bad}");
        }
        let hint = check_name("My_Env").unwrap().hint.unwrap();
        assert!(hint.contains("my-env.json"), "{hint}");
    }
}
