//! The backup service, when the environment has a `backup` section: busybox
//! crond runs the rendered backup script on the schedule, inside the stack
//! (no cron lines on the host). The script takes each backup online — the
//! SQLite online backup API, or a single-transaction dump of MySQL — with the
//! rendered configuration and the deployed commit, verifies it by a restore
//! into a scratch database and prunes old ones; the same script serves
//! `tracker-gitops backup` and `restore` through `docker compose exec`.

use super::{Access, BindDir, Component, Service, database, healthcheck, secret_path, tracker};
use crate::environment::{Database, Environment};

pub const SERVICE: &str = "backup";

/// Holds [`SCRIPT_FILE`] and [`CRONTAB_FILE`], rendered from the environment.
pub const CONFIG_DIR: BindDir = BindDir {
    tree: "storage/backup/etc",
    container: "/etc/tracker-gitops/backup",
};
pub const SCRIPT_FILE: &str = "backup.sh";
/// busybox crond reads `<dir>/<user>`: the jobs run as root in the container.
pub const CRONTAB_DIR: &str = "crontabs";
pub const CRONTAB_FILE: &str = "crontabs/root";
/// The checkout, read-only: the rendered configuration and the commit (`.git/HEAD`).
pub const CHECKOUT: &str = "/stack";
/// The backup directory on the VM, inside the container.
pub const BACKUPS: &str = "/backups";

/// The script's path in the container.
pub fn script() -> String {
    CONFIG_DIR.container_path(SCRIPT_FILE)
}

pub(super) fn component(env: &Environment) -> Option<Component> {
    let backup = env.file.backup.as_ref()?;
    let mut service = Service::new(SERVICE, &backup.image);
    service.command = vec!["/bin/sh".into(), script(), "schedule".into()];
    // crond reads the schedule in local time: the schedule is UTC.
    service.env("TZ", "UTC");
    // Healthy when a backup could be taken: the backup directory writable,
    // MySQL answering its root account.
    service.healthcheck = Some(healthcheck(&["CMD", "/bin/sh", &script(), "health"]));
    service.bind(CONFIG_DIR);
    service.mount(".", CHECKOUT, Some(Access::ReadOnly));
    service.mount(backup.path.as_str(), BACKUPS, None);
    let mut component = Component::new(service);
    match &env.file.tracker.core.database {
        // The tracker's data directory at its place in the checkout, writable
        // for a restore, shared with the tracker.
        Database::Sqlite { .. } => component.service.mount(
            format!("./{}", tracker::DATA_DIR.tree),
            &format!("{CHECKOUT}/{}", tracker::DATA_DIR.tree),
            Some(Access::Shared),
        ),
        Database::Mysql(mysql) => {
            // The rules require both for a backup of MySQL.
            if let Some(root) = &mysql.root_password {
                component.secret(database::ROOT_PASSWORD_SECRET, root.name());
            }
            if mysql.bundled() {
                component.reach(database::SERVICE, "database", true);
            }
        }
    }
    Some(component)
}

/// Where the backup service reads the MySQL root password.
pub fn root_password_file() -> String {
    secret_path(database::ROOT_PASSWORD_SECRET)
}

/// The SQLite file of the tracker as the backup service sees it.
pub fn sqlite_path(database_name: &str) -> String {
    format!(
        "{CHECKOUT}/{}/{}/{database_name}",
        tracker::DATA_DIR.tree,
        tracker::SQLITE_DIR
    )
}

#[cfg(test)]
mod tests {
    use crate::environment::test_environment;
    use crate::stack::{Access, Stack};

    #[test]
    fn sqlite_backup_shares_the_data_directory_and_reads_the_checkout() {
        let stack = Stack::build(&test_environment(
            r#""backup": { "schedule": "17 3 * * *", "path": "/srv/backups" },"#,
        ));
        let backup = stack.service("backup").unwrap();
        let mounts: Vec<_> = backup
            .volumes
            .iter()
            .map(|m| (m.source.as_str(), m.target.as_str(), m.access))
            .collect();
        assert_eq!(
            mounts,
            [
                ("./storage/backup/etc", "/etc/tracker-gitops/backup", None),
                (".", "/stack", Some(Access::ReadOnly)),
                ("/srv/backups", "/backups", None),
                (
                    "./storage/tracker/lib",
                    "/stack/storage/tracker/lib",
                    Some(Access::Shared)
                ),
            ]
        );
        assert!(backup.depends_on.is_empty() && backup.secrets.is_empty());
        assert_eq!(
            super::sqlite_path("sqlite3.db"),
            "/stack/storage/tracker/lib/database/sqlite3.db"
        );
    }
}
