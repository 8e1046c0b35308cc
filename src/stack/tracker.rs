//! The tracker service: its listeners, its configuration and data directories,
//! and the database settings it takes from compose at deploy time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{
    BindDir, Component, EndpointKind, EnvVar, Part, Scheme, Service, database, healthcheck,
};
use crate::environment::{ConfigSchema, Database, Environment, Mysql};

pub const SERVICE: &str = "tracker";

/// Holds [`CONFIG_FILE`], rendered from the environment.
pub const CONFIG_DIR: BindDir = BindDir {
    tree: "storage/tracker/etc",
    container: "/etc/torrust/tracker",
};
pub const CONFIG_FILE: &str = "tracker.toml";
/// The tracker's state (the SQLite database), kept on the VM, outside git.
pub const DATA_DIR: BindDir = BindDir {
    tree: "storage/tracker/lib",
    container: "/var/lib/torrust/tracker",
};
/// The SQLite database's directory in [`DATA_DIR`].
pub const SQLITE_DIR: &str = "database";
pub const LOG_DIR: BindDir = BindDir {
    tree: "storage/tracker/log",
    container: "/var/log/torrust/tracker",
};

/// The driver name, in the configuration file and its override variable.
pub fn driver(database: &Database) -> &'static str {
    match database {
        Database::Sqlite { .. } => "sqlite3",
        Database::Mysql(_) => "mysql",
    }
}

/// Where the tracker finds its data: what a change must keep for the tracker
/// to start on the data it had (compared by [`super::loss`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "driver")]
pub enum TrackerDatabase {
    #[serde(rename = "sqlite3")]
    Sqlite {
        /// The database file, relative to the compose file.
        file: String,
    },
    #[serde(rename = "mysql")]
    Mysql {
        /// [`database::SERVICE`] for the stack's own server.
        host: String,
        port: u16,
        name: String,
    },
}

impl TrackerDatabase {
    pub fn of(database: &Database) -> Self {
        match database {
            Database::Sqlite { database_name } => Self::Sqlite {
                file: DATA_DIR.tree_path(&format!("{SQLITE_DIR}/{database_name}")),
            },
            Database::Mysql(mysql) => Self::Mysql {
                host: mysql.host.clone(),
                port: mysql.port,
                name: mysql.database_name.clone(),
            },
        }
    }
}

/// The address the tracker's health-check API answers on, from inside its container.
pub fn health_url(env: &Environment) -> String {
    let address = env.file.tracker.health_check_api.bind_address;
    let ip = if address.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        address.ip()
    };
    format!(
        "http://{}/health_check",
        SocketAddr::new(ip, address.port())
    )
}

pub(super) fn component(env: &Environment) -> Component {
    let config = &env.file.tracker;
    let mut tracker = Service::new(SERVICE, &config.image);
    // The tracker runs as PID 1, which ignores SIGTERM; it shuts down cleanly on
    // SIGINT. Without this every recreate waits out compose's 10 s stop timeout.
    tracker.stop_signal = Some("SIGINT".into());
    tracker.env(
        "TORRUST_TRACKER_CONFIG_TOML_PATH",
        CONFIG_DIR.container_path(CONFIG_FILE),
    );
    // The 3.0.0 image's entry script refuses to start without it.
    tracker.env(
        "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER",
        driver(&config.core.database),
    );
    tracker.environment.push(EnvVar {
        name: "TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN".into(),
        value: vec![Part::Secret(config.http_api.admin_token.name().into())],
    });
    if let Database::Mysql(mysql) = &config.core.database {
        tracker.environment.push(mysql_password(env, mysql));
    }
    let mut component = Component::new(tracker);
    // Published as the tracker binds them: the same port inside and out; a
    // listener served over HTTPS is reached through Caddy only.
    for l in &config.udp_trackers {
        let address = l.bind_address;
        component.serve(
            EndpointKind::UdpTracker,
            Scheme::Udp,
            address,
            address.port(),
            "/announce",
        );
    }
    for l in config
        .http_trackers
        .iter()
        .filter(|l| !env.file.behind_tls(&l.domain))
    {
        let address = l.bind_address;
        component.serve(
            EndpointKind::HttpTracker,
            Scheme::Http,
            address,
            address.port(),
            "/announce",
        );
    }
    let api = config.http_api.bind_address;
    if !env.file.behind_tls(&config.http_api.domain) {
        component.serve(
            EndpointKind::HttpApi,
            Scheme::Http,
            api,
            api.port(),
            "/api/v1/",
        );
    }
    let tracker = &mut component.service;
    tracker.bind(DATA_DIR);
    tracker.bind(LOG_DIR);
    tracker.bind(CONFIG_DIR);
    tracker.healthcheck = Some(healthcheck(&[
        "CMD",
        "/usr/bin/http_health_check",
        &health_url(env),
    ]));
    if matches!(&config.core.database, Database::Mysql(mysql) if mysql.bundled()) {
        component.reach(database::SERVICE, "database", true);
    }
    component
}

/// The variable that hands the MySQL password to the tracker at deploy time.
fn mysql_password(env: &Environment, mysql: &Mysql) -> EnvVar {
    match env.config_schema() {
        // Schema 2.0.0 takes a URL, which the tracker percent-decodes: the
        // user is encoded here, the password (spliced in at deploy time) on the VM.
        ConfigSchema::V2 => EnvVar {
            name: "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH".into(),
            value: vec![
                Part::Text(format!("mysql://{}:", url_encoded(&mysql.user))),
                Part::SecretInUrl(mysql.password.name().into()),
                Part::Text(format!(
                    "@{}:{}/{}",
                    mysql.host, mysql.port, mysql.database_name
                )),
            ],
        },
        ConfigSchema::V3 => EnvVar {
            name: "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PASSWORD".into(),
            value: vec![Part::Secret(mysql.password.name().into())],
        },
    }
}

/// `text` percent-encoded for a URL's user information: everything but
/// RFC 3986's unreserved characters.
fn url_encoded(text: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::test_environment;

    /// Schema 2.0.0's URL: the user encoded at render, the password by the VM.
    #[test]
    fn the_mysql_url_encodes_user_and_password() {
        assert_eq!(
            url_encoded("a@b/c#d?e%f:g h~-._é"),
            "a%40b%2Fc%23d%3Fe%25f%3Ag%20h~-._%C3%A9"
        );
        let mut env = test_environment("");
        env.file.tracker.image = "torrust/tracker:3.0.0".into();
        let Database::Mysql(mysql) = serde_json::from_value(serde_json::json!({
            "driver": "mysql", "database_name": "db", "user": "u_1",
            "password": { "secret": "PW" }
        }))
        .unwrap() else {
            unreachable!()
        };
        let url = mysql_password(&env, &mysql);
        assert_eq!(
            url.value,
            [
                Part::Text("mysql://u_1:".into()),
                Part::SecretInUrl("PW".into()),
                Part::Text("@mysql:3306/db".into())
            ]
        );
    }
}
