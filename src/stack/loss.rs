//! Changes that lose or orphan data, found by comparing two stacks: the one
//! running (or at a plan's base) and the one to deploy. Compose would apply
//! them as ordinary recreations; here each gets a stable id, words a reviewer
//! cannot miss, and a [`Gate`] that passes only when the new version's
//! environment acknowledges exactly the losses it brings.
//!
//! The data a stack keeps between deploys: the tracker's database (where
//! [`TrackerDatabase`] says), and each service's named volumes. The tracker's
//! data directories ([`super::DATA_DIRS`]) hold the SQLite file, compared
//! through its path.

use std::fmt;

use serde::Serialize;

use super::{Stack, TrackerDatabase, caddy, database, grafana, prometheus};

/// What kind of loss; the part of an id before the `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// SQLite ↔ MySQL.
    DatabaseDriver,
    /// Another SQLite file.
    SqliteFile,
    /// Another MySQL server (the stack's own, or an external one).
    MysqlServer,
    /// Another database on the same MySQL server.
    MysqlDatabase,
    /// A service that keeps data in a volume is removed.
    ServiceRemoved,
    /// A service no longer mounts one of its volumes (Prometheus persistence off).
    VolumeDropped,
    /// A service mounts another volume where one was.
    VolumeRenamed,
    /// A service mounts its volume at another path.
    VolumeMoved,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Self::DatabaseDriver,
        Self::SqliteFile,
        Self::MysqlServer,
        Self::MysqlDatabase,
        Self::ServiceRemoved,
        Self::VolumeDropped,
        Self::VolumeRenamed,
        Self::VolumeMoved,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Self::DatabaseDriver => "database-driver",
            Self::SqliteFile => "sqlite-file",
            Self::MysqlServer => "mysql-server",
            Self::MysqlDatabase => "mysql-database",
            Self::ServiceRemoved => "service-removed",
            Self::VolumeDropped => "volume-dropped",
            Self::VolumeRenamed => "volume-renamed",
            Self::VolumeMoved => "volume-moved",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// One change that loses or orphans data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataLoss {
    /// `<kind>:<what>`, e.g. `database-driver:mysql->sqlite3`: what
    /// `acknowledge_data_loss` names. The same change always has the same id.
    pub id: String,
    pub kind: Kind,
    /// What changes, in one sentence.
    pub change: String,
    /// What happens to the data, in one sentence.
    pub consequence: String,
}

impl DataLoss {
    fn new(kind: Kind, subject: &str, change: String, consequence: String) -> Self {
        Self {
            id: format!("{kind}:{subject}"),
            kind,
            change,
            consequence,
        }
    }
}

/// What the tracker's database holds, for the words of a loss.
const TRACKER_DATA: &str = "its torrents, whitelist, keys and completed-download counts";

/// Every change from `old` to `new` that loses or orphans data, database first.
pub fn between(old: &Stack, new: &Stack) -> Vec<DataLoss> {
    let mut found = match (&old.database, &new.database) {
        (Some(a), Some(b)) => tracker_database(a, b),
        // Recorded by an older tracker-gitops: nothing to compare.
        _ => Vec::new(),
    };
    // The bundled server's volume is what a database change already speaks of.
    let server_gone = old.database.as_ref().is_some_and(bundled) && !found.is_empty();
    for service in &old.services {
        let volumes: Vec<_> = service.volumes.iter().filter(|m| !m.bind).collect();
        if volumes.is_empty() || (server_gone && service.name == database::SERVICE) {
            continue;
        }
        let Some(after) = new.service(&service.name) else {
            let names: Vec<_> = volumes.iter().map(|m| describe(&m.source)).collect();
            found.push(DataLoss::new(
                Kind::ServiceRemoved,
                &service.name,
                format!("service `{}` is removed", service.name),
                format!(
                    "its data stays on the VM, unused by anything: {}",
                    names.join(", ")
                ),
            ));
            continue;
        };
        for mount in volumes {
            let name = &mount.source;
            let same_name = after.volumes.iter().find(|m| !m.bind && &m.source == name);
            let in_its_place = after
                .volumes
                .iter()
                .find(|m| !m.bind && m.target == mount.target && !service.volumes.contains(m));
            let (service, what) = (&service.name, describe(name));
            found.push(match (same_name, in_its_place) {
                (Some(m), _) if m.target == mount.target => continue,
                (Some(m), _) => DataLoss::new(
                    Kind::VolumeMoved,
                    name,
                    format!(
                        "`{service}` mounts volume `{name}` at {} instead of {}",
                        m.target, mount.target
                    ),
                    format!("{service} no longer finds {what} where it reads it, and starts empty"),
                ),
                (None, Some(m)) => DataLoss::new(
                    Kind::VolumeRenamed,
                    &format!("{name}->{}", m.source),
                    format!("`{service}` mounts volume `{}` instead of `{name}`", m.source),
                    format!(
                        "{service} starts on the empty volume `{}`; {what} stays in `{name}`, unused",
                        m.source
                    ),
                ),
                (None, None) => DataLoss::new(
                    Kind::VolumeDropped,
                    name,
                    format!("`{service}` no longer mounts volume `{name}`"),
                    format!(
                        "{what} stays in the volume, unused; {service} starts empty and keeps \
                         what it writes inside its container, lost at every recreate"
                    ),
                ),
            });
        }
    }
    found
}

/// `volume `name` (what it holds)`.
fn describe(volume: &str) -> String {
    let holds = match volume {
        database::VOLUME => "the stack's MySQL server: the tracker's database",
        prometheus::VOLUME => "Prometheus's metrics history",
        grafana::VOLUME => "Grafana's users, settings and dashboards edited in it",
        caddy::DATA_VOLUME => {
            "Caddy's certificates and ACME account: reissued, within the CA's rate limits"
        }
        _ => return format!("volume `{volume}`"),
    };
    format!("volume `{volume}` ({holds})")
}

fn bundled(database: &TrackerDatabase) -> bool {
    matches!(database, TrackerDatabase::Mysql { host, .. } if host == database::SERVICE)
}

/// The database the tracker uses, in words.
fn database_words(database: &TrackerDatabase) -> String {
    match database {
        TrackerDatabase::Sqlite { file } => format!("SQLite file {file}"),
        TrackerDatabase::Mysql { name, .. } => {
            format!("MySQL database `{name}` on {}", server_words(database))
        }
    }
}

/// The MySQL server, in an id (`mysql` for the stack's own, else `host:port`).
fn server_id(database: &TrackerDatabase) -> String {
    match database {
        TrackerDatabase::Mysql { host, port, .. } if !bundled(database) => format!("{host}:{port}"),
        _ => database::SERVICE.to_string(),
    }
}

fn server_words(database: &TrackerDatabase) -> String {
    if bundled(database) {
        format!("the stack's own server (volume `{}`)", database::VOLUME)
    } else {
        format!("the server at {}", server_id(database))
    }
}

/// The tracker finds no data of its own after the change.
fn starts_empty(old: &TrackerDatabase) -> String {
    format!(
        "the tracker starts on an EMPTY database: {TRACKER_DATA} are not carried over; \
         the old data stays in the {}, unused",
        database_words(old)
    )
}

fn tracker_database(old: &TrackerDatabase, new: &TrackerDatabase) -> Vec<DataLoss> {
    use TrackerDatabase::{Mysql, Sqlite};
    let changes = |what: &str| {
        format!(
            "the tracker's {what} changes from the {} to the {}",
            database_words(old),
            database_words(new)
        )
    };
    match (old, new) {
        (Sqlite { file: a }, Sqlite { file: b }) if a != b => vec![DataLoss::new(
            Kind::SqliteFile,
            &format!("{}->{}", file_name(a, b), file_name(b, a)),
            changes("database"),
            starts_empty(old),
        )],
        (Mysql { name: a, .. }, Mysql { name: b, .. }) => {
            let (from, to) = (server_id(old), server_id(new));
            [
                (
                    Kind::MysqlServer,
                    from != to,
                    format!("{from}->{to}"),
                    "MySQL server",
                ),
                (
                    Kind::MysqlDatabase,
                    a != b,
                    format!("{a}->{b}"),
                    "MySQL database",
                ),
            ]
            .into_iter()
            .filter(|(_, differs, _, _)| *differs)
            .map(|(kind, _, subject, what)| {
                DataLoss::new(kind, &subject, changes(what), starts_empty(old))
            })
            .collect()
        }
        (Sqlite { .. }, Mysql { .. }) | (Mysql { .. }, Sqlite { .. }) => {
            let driver = |d: &TrackerDatabase| match d {
                Sqlite { .. } => "sqlite3",
                Mysql { .. } => "mysql",
            };
            vec![DataLoss::new(
                Kind::DatabaseDriver,
                &format!("{}->{}", driver(old), driver(new)),
                changes("database"),
                starts_empty(old),
            )]
        }
        _ => Vec::new(),
    }
}

/// The file's name, or its whole path when the other is in another directory.
fn file_name<'a>(path: &'a str, other: &str) -> &'a str {
    match (path.rsplit_once('/'), other.rsplit_once('/')) {
        (Some((dir, name)), Some((other_dir, _))) if dir == other_dir => name,
        _ => path,
    }
}

/// The data losses of a deploy, each with whether the new version's
/// environment acknowledges it, and the acknowledgements that name none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Gate {
    pub losses: Vec<Checked>,
    /// Ids acknowledged that this change does not bring: an acknowledgement
    /// left in the file would accept the same loss again later, unseen.
    pub stale: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    #[serde(flatten)]
    pub loss: DataLoss,
    pub acknowledged: bool,
}

impl Gate {
    /// From `old` (`None`: nothing there yet) to `new`, with these
    /// acknowledgements (a deploy's: those `new` records).
    pub fn between(old: Option<&Stack>, new: &Stack, acknowledged: &[String]) -> Self {
        let losses = old.map(|old| between(old, new)).unwrap_or_default();
        let stale = acknowledged
            .iter()
            .filter(|id| !losses.iter().any(|l| &l.id == *id))
            .cloned()
            .collect();
        Self {
            losses: losses
                .into_iter()
                .map(|loss| Checked {
                    acknowledged: acknowledged.contains(&loss.id),
                    loss,
                })
                .collect(),
            stale,
        }
    }

    /// No unacknowledged loss and no stale acknowledgement.
    pub fn passes(&self) -> bool {
        self.stale.is_empty() && self.losses.iter().all(|c| c.acknowledged)
    }

    pub fn unacknowledged(&self) -> impl Iterator<Item = &DataLoss> {
        self.losses
            .iter()
            .filter(|c| !c.acknowledged)
            .map(|c| &c.loss)
    }
}

/// Whether `id` could name a loss that brings a stack to `stack`: its
/// after-side is what `stack` has. `None` when `id` is not `<kind>:<what>`
/// with a known kind.
pub fn possible(id: &str, stack: &Stack) -> Option<Result<(), String>> {
    let (kind, subject) = id.split_once(':')?;
    let kind = Kind::ALL.into_iter().find(|k| k.word() == kind)?;
    let after = subject.split_once("->").map(|(_, to)| to);
    let database = stack.database.as_ref()?;
    let volume = |name: &str| stack.volumes.iter().any(|v| v == name);
    let problem = match (kind, database) {
        (Kind::DatabaseDriver, _) => {
            let now = match database {
                TrackerDatabase::Sqlite { .. } => "sqlite3",
                TrackerDatabase::Mysql { .. } => "mysql",
            };
            (after != Some(now)).then(|| format!("the tracker's database driver is `{now}`"))
        }
        (Kind::SqliteFile, TrackerDatabase::Sqlite { file }) => {
            let names_it = after.is_some_and(|to| file == to || file.ends_with(&format!("/{to}")));
            (!names_it).then(|| format!("the tracker's SQLite file is {file}"))
        }
        (Kind::MysqlServer, TrackerDatabase::Mysql { .. }) => {
            let now = server_id(database);
            (after != Some(&now)).then(|| format!("the tracker's MySQL server is `{now}`"))
        }
        (Kind::MysqlDatabase, TrackerDatabase::Mysql { name, .. }) => {
            (after != Some(name)).then(|| format!("the tracker's MySQL database is `{name}`"))
        }
        (Kind::SqliteFile | Kind::MysqlServer | Kind::MysqlDatabase, _) => Some(format!(
            "the tracker's database driver is `{}`",
            match database {
                TrackerDatabase::Sqlite { .. } => "sqlite3",
                TrackerDatabase::Mysql { .. } => "mysql",
            }
        )),
        (Kind::ServiceRemoved, _) => stack
            .service(subject)
            .map(|_| format!("the stack still runs `{subject}`")),
        (Kind::VolumeDropped, _) => {
            volume(subject).then(|| format!("the stack still mounts volume `{subject}`"))
        }
        (Kind::VolumeRenamed, _) => match after {
            Some(to) if volume(to) => None,
            _ => Some(format!(
                "the stack has no volume `{}`",
                after.unwrap_or(subject)
            )),
        },
        (Kind::VolumeMoved, _) => {
            (!volume(subject)).then(|| format!("the stack has no volume `{subject}`"))
        }
    };
    Some(problem.map_or(Ok(()), Err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::test_environment;

    const SQLITE: &str = r#"{ "driver": "sqlite3" }"#;
    const MYSQL: &str = r#"{ "driver": "mysql", "database_name": "torrust", "user": "torrust", "password": { "secret": "MYSQL_PASSWORD" } }"#;

    /// The stack of the test environment with `database` and `rest` (top-level sections).
    fn stack(database: &str, rest: &str) -> Stack {
        let mut env = test_environment(rest);
        env.file.tracker.core.database = serde_json::from_str(database).unwrap();
        Stack::build(&env)
    }

    fn ids(old: &Stack, new: &Stack) -> Vec<String> {
        between(old, new).into_iter().map(|l| l.id).collect()
    }

    #[test]
    fn nothing_lost_between_equal_stacks() {
        let a = stack(
            MYSQL,
            r#""prometheus": {}, "grafana": { "admin_password": { "secret": "G" } },"#,
        );
        assert!(between(&a, &a).is_empty());
    }

    #[test]
    fn mysql_to_sqlite_is_one_loss_that_names_the_orphaned_volume() {
        let (old, new) = (stack(MYSQL, ""), stack(SQLITE, ""));
        let losses = between(&old, &new);
        assert_eq!(losses.len(), 1, "{losses:#?}");
        let loss = &losses[0];
        assert_eq!(loss.id, "database-driver:mysql->sqlite3");
        assert!(
            loss.consequence.contains("EMPTY database"),
            "{}",
            loss.consequence
        );
        assert!(
            loss.consequence.contains("volume `mysql_data`"),
            "{}",
            loss.consequence
        );
        assert_eq!(ids(&new, &old), ["database-driver:sqlite3->mysql"]);
    }

    #[test]
    fn sqlite_file_mysql_server_and_database_changes() {
        let renamed = SQLITE.replace(
            r#""sqlite3" }"#,
            r#""sqlite3", "database_name": "tracker.db" }"#,
        );
        assert_eq!(
            ids(&stack(SQLITE, ""), &stack(&renamed, "")),
            ["sqlite-file:sqlite3.db->tracker.db"]
        );
        let external = MYSQL.replace(
            r#""mysql","#,
            r#""mysql", "host": "db.example.org", "port": 3307,"#,
        );
        assert_eq!(
            ids(&stack(MYSQL, ""), &stack(&external, "")),
            ["mysql-server:mysql->db.example.org:3307"]
        );
        let other_name = MYSQL.replace(r#""torrust", "user""#, r#""tracker", "user""#);
        assert_eq!(
            ids(&stack(MYSQL, ""), &stack(&other_name, "")),
            ["mysql-database:torrust->tracker"]
        );
        // The stack's own server on another port keeps its volume: no loss.
        let port = MYSQL.replace(r#""mysql","#, r#""mysql", "port": 3307,"#);
        assert!(ids(&stack(MYSQL, ""), &stack(&port, "")).is_empty());
    }

    #[test]
    fn removed_services_and_dropped_volumes() {
        let full = stack(
            SQLITE,
            r#""prometheus": {}, "grafana": { "admin_password": { "secret": "G" } },"#,
        );
        let no_grafana = stack(SQLITE, r#""prometheus": {},"#);
        let not_persisted = stack(SQLITE, r#""prometheus": { "persist_data": false },"#);
        assert_eq!(ids(&full, &no_grafana), ["service-removed:grafana"]);
        assert_eq!(
            ids(&no_grafana, &not_persisted),
            ["volume-dropped:prometheus_data"]
        );
        let losses = between(&no_grafana, &not_persisted);
        assert!(losses[0].consequence.contains("lost at every recreate"));
        assert!(losses[0].consequence.contains("metrics history"));
        assert_eq!(
            ids(&full, &stack(SQLITE, "")),
            ["service-removed:prometheus", "service-removed:grafana"]
        );
        // Turning persistence on loses nothing.
        assert!(ids(&not_persisted, &no_grafana).is_empty());
    }

    #[test]
    fn renamed_and_moved_volumes() {
        let old = stack(SQLITE, r#""prometheus": {},"#);
        let mut renamed = old.clone();
        renamed.services[1].volumes[1].source = "metrics".into();
        assert_eq!(
            ids(&old, &renamed),
            ["volume-renamed:prometheus_data->metrics"]
        );
        let mut moved = old.clone();
        moved.services[1].volumes[1].target = "/data".into();
        assert_eq!(ids(&old, &moved), ["volume-moved:prometheus_data"]);
    }

    #[test]
    fn the_gate_needs_every_loss_acknowledged_and_nothing_else() {
        let old = stack(MYSQL, "");
        let mut new = stack(SQLITE, "");
        let gate = Gate::between(Some(&old), &new, &[]);
        assert!(!gate.passes());
        assert_eq!(gate.unacknowledged().count(), 1);
        new.acknowledged_data_loss = vec!["database-driver:mysql->sqlite3".into()];
        let deploy =
            |old: &Stack, new: &Stack| Gate::between(Some(old), new, &new.acknowledged_data_loss);
        assert!(deploy(&old, &new).passes());
        // Once deployed, the acknowledgement names no loss: stale.
        let gate = deploy(&new, &new);
        assert_eq!(gate.stale, ["database-driver:mysql->sqlite3"]);
        assert!(!gate.passes());
        // A first deploy loses nothing.
        assert!(Gate::between(None, &stack(SQLITE, ""), &[]).passes());
        // Going back takes its own acknowledgement.
        assert!(!Gate::between(Some(&new), &old, &[]).passes());
        let back = Gate::between(Some(&new), &old, &["database-driver:sqlite3->mysql".into()]);
        assert!(back.passes(), "{back:#?}");
    }

    #[test]
    fn possible_acknowledgements_match_the_stack_they_lead_to() {
        let sqlite = stack(SQLITE, r#""prometheus": { "persist_data": false },"#);
        let ok = |id: &str| possible(id, &sqlite);
        assert_eq!(ok("database-driver:mysql->sqlite3"), Some(Ok(())));
        assert!(
            matches!(ok("database-driver:sqlite3->mysql"), Some(Err(e)) if e.contains("`sqlite3`"))
        );
        assert_eq!(ok("sqlite-file:old.db->sqlite3.db"), Some(Ok(())));
        assert!(matches!(ok("sqlite-file:sqlite3.db->new.db"), Some(Err(_))));
        assert!(matches!(ok("mysql-database:a->b"), Some(Err(_))));
        assert_eq!(ok("volume-dropped:prometheus_data"), Some(Ok(())));
        assert_eq!(ok("service-removed:grafana"), Some(Ok(())));
        assert!(matches!(ok("service-removed:tracker"), Some(Err(_))));
        assert_eq!(ok("no-such-kind:x"), None);
        assert_eq!(ok("database-driver"), None);
    }

    /// The schema's pattern for `acknowledge_data_loss` knows every kind, and no other.
    #[test]
    fn the_schema_knows_every_kind() {
        let schema: serde_json::Value =
            serde_json::from_str(crate::environment::schema::SCHEMA).unwrap();
        let pattern = schema["properties"]["acknowledge_data_loss"]["items"]["pattern"]
            .as_str()
            .unwrap();
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.word()).collect();
        assert!(
            pattern.starts_with(&format!("^({}):", kinds.join("|"))),
            "{pattern}"
        );
        let regex = schema_matcher(pattern);
        for loss in [
            "database-driver:mysql->sqlite3",
            "mysql-server:mysql->db.example.org:3307",
            "sqlite-file:storage/tracker/lib/database/a.db->storage/x/b.db",
            "volume-renamed:prometheus_data->metrics",
            "service-removed:grafana",
        ] {
            assert!(regex(loss), "{loss}");
        }
        for bad in [
            "database-driver:",
            "drop:x",
            "volume-dropped:a b",
            "service-removed:x->",
        ] {
            assert!(!regex(bad), "{bad}");
        }
    }

    /// Matches with the schema validator's own regular expressions.
    fn schema_matcher(pattern: &str) -> impl Fn(&str) -> bool {
        let schema = serde_json::json!({ "type": "string", "pattern": pattern });
        move |text| jsonschema::is_valid(&schema, &serde_json::json!(text))
    }
}
