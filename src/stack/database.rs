//! The bundled MySQL service, when the tracker's database is `mysql` on the
//! stack's own host; the tracker reaches it on the `database` network.

use super::{Component, Service, healthcheck, secret_path};
use crate::environment::{DEFAULT_MYSQL_IMAGE, Database, Environment};

pub const SERVICE: &str = "mysql";
/// The named volume that holds its data.
pub const VOLUME: &str = "mysql_data";

/// Secret names inside the stack.
const PASSWORD_SECRET: &str = "mysql_password";
pub(super) const ROOT_PASSWORD_SECRET: &str = "mysql_root_password";

pub(super) fn component(env: &Environment) -> Option<Component> {
    let Database::Mysql(mysql) = &env.file.tracker.core.database else {
        return None;
    };
    if !mysql.bundled() {
        return None;
    }
    let mut db = Service::new(
        SERVICE,
        mysql.image.as_deref().unwrap_or(DEFAULT_MYSQL_IMAGE),
    );
    if mysql.port != 3306 {
        db.command = vec!["mysqld".into(), format!("--port={}", mysql.port)];
    }
    db.env("MYSQL_DATABASE", &mysql.database_name);
    db.env("MYSQL_USER", &mysql.user);
    db.env("MYSQL_PASSWORD_FILE", secret_path(PASSWORD_SECRET));
    let port = mysql.port.to_string();
    db.healthcheck = Some(healthcheck(&[
        "CMD",
        "mysqladmin",
        "ping",
        "--host=127.0.0.1",
        &format!("--port={port}"),
        "--silent",
    ]));

    let mut component = Component::new(db);
    component.secret(PASSWORD_SECRET, mysql.password.name());
    match &mysql.root_password {
        Some(root) => {
            component.service.env(
                "MYSQL_ROOT_PASSWORD_FILE",
                secret_path(ROOT_PASSWORD_SECRET),
            );
            component.secret(ROOT_PASSWORD_SECRET, root.name());
        }
        // Chosen by MySQL at first start, so rendering stays deterministic.
        None => component.service.env("MYSQL_RANDOM_ROOT_PASSWORD", "yes"),
    }
    component.volume(VOLUME, "/var/lib/mysql");
    Some(component)
}
