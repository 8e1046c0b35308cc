//! `import` of the upstream deployer's environment files (the fixtures in
//! `tests/fixtures/upstream/`, derived from its published examples): every one
//! imports, validates and renders, its settings carry over field by field, and
//! no secret value from it ever reaches a file or the output.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{Project, Run, repo_root};

fn fixtures() -> Vec<PathBuf> {
    let dir = repo_root().join("tests/fixtures/upstream");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    found.sort();
    assert!(found.len() >= 7, "fixtures missing: {found:?}");
    found
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Imports `fixture` into a fresh project: the run, the project, the name.
fn import(fixture: &Path) -> (Run, Project, String) {
    let project = Project::new();
    let run = project.run(&["import", fixture.to_str().unwrap()]);
    let name = json(&std::fs::read_to_string(fixture).unwrap())["environment"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    (run, project, name)
}

#[test]
fn every_fixture_imports_validates_and_renders() {
    for fixture in fixtures() {
        let (run, project, name) = import(&fixture);
        let run = run.expect(0);
        assert!(
            run.stdout().contains(&format!("build/{name}: written")),
            "{}",
            run.stdout()
        );
        project.run(&["validate", "--env", &name]).expect(0);
        project.run(&["render", "--check"]).expect(0);
        for file in ["docker-compose.yml", "storage/tracker/etc/tracker.toml"] {
            assert!(project.join(&format!("build/{name}/{file}")).is_file());
        }
    }
}

/// The domain a service of the upstream file is served under with TLS, or null.
fn tls_domain(service: &Value) -> Value {
    if service["use_tls_proxy"] == true {
        service["domain"].clone()
    } else {
        Value::Null
    }
}

/// The ports the rendered stack publishes for `service`, as `ip:port/protocol`.
fn published(stack: &Value, service: &str) -> Vec<String> {
    let services = stack["stack"]["services"].as_array().unwrap();
    let Some(service) = services.iter().find(|s| s["name"] == service) else {
        return Vec::new();
    };
    service["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}:{}/{}",
                p["host_ip"].as_str().unwrap(),
                p["published"],
                p["protocol"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn settings_carry_over_field_by_field() {
    for fixture in fixtures() {
        let upstream = json(&std::fs::read_to_string(&fixture).unwrap());
        let (run, project, name) = import(&fixture);
        run.expect(0);
        let env = json(&project.read(&format!("environments/{name}.json")));
        let stack = json(&project.read(&format!("build/{name}/.tracker-gitops/stack.json")));
        let at = |what: &str| format!("{name}: {what}");
        let (up, ours) = (&upstream["tracker"], &env["tracker"]);

        // Listeners: every one, in order, and published by the rendered stack.
        for (list, protocol) in [("udp_trackers", "udp"), ("http_trackers", "tcp")] {
            let expected: Vec<&Value> = up[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| &l["bind_address"])
                .collect();
            let carried: Vec<&Value> = ours[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| &l["bind_address"])
                .collect();
            assert_eq!(carried, expected, "{}", at(list));
            for (listener, ours) in up[list]
                .as_array()
                .unwrap()
                .iter()
                .zip(ours[list].as_array().unwrap())
            {
                let address = format!("{}/{protocol}", listener["bind_address"].as_str().unwrap());
                // Behind HTTPS a tracker is reached through Caddy only.
                let plain = tls_domain(listener).is_null();
                assert_eq!(
                    published(&stack, "tracker").contains(&address),
                    plain,
                    "{}",
                    at(&address)
                );
                assert_eq!(
                    ours.get("domain").unwrap_or(&Value::Null),
                    &tls_domain(listener),
                    "{}",
                    at(list)
                );
            }
        }
        for service in ["http_api", "health_check_api"] {
            assert_eq!(
                ours[service]["bind_address"],
                up[service]["bind_address"],
                "{}",
                at(service)
            );
            assert_eq!(
                ours[service].get("domain").unwrap_or(&Value::Null),
                &tls_domain(&up[service]),
                "{}",
                at(service)
            );
        }

        // HTTPS: when a service is served over it.
        let served = !env["tracker"]["http_trackers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("domain").is_none());
        if served {
            let https = &upstream["https"];
            assert_eq!(
                env["https"]["email"],
                https["admin_email"],
                "{}",
                at("https")
            );
            let staging = https["use_staging"] == true;
            assert_eq!(
                env["https"]["ca"],
                if staging {
                    "letsencrypt-staging"
                } else {
                    "letsencrypt"
                },
                "{}",
                at("ca")
            );
            assert_eq!(
                published(&stack, "caddy")
                    .iter()
                    .filter(|p| p.ends_with(":443/tcp"))
                    .count(),
                1,
                "{}",
                at("caddy")
            );
        }
        assert_eq!(
            ours["core"]["private"],
            up["core"]["private"],
            "{}",
            at("private")
        );

        // Database.
        let (db, our_db) = (&up["core"]["database"], &ours["core"]["database"]);
        assert_eq!(our_db["driver"], db["driver"], "{}", at("driver"));
        assert_eq!(
            our_db["database_name"],
            db["database_name"],
            "{}",
            at("database_name")
        );
        if db["driver"] == "mysql" {
            assert_eq!(our_db["host"], db["host"], "{}", at("host"));
            assert_eq!(our_db["port"], db["port"], "{}", at("port"));
            assert_eq!(our_db["user"], db["username"], "{}", at("user"));
            assert_eq!(
                our_db["password"],
                serde_json::json!({"secret": "MYSQL_PASSWORD"})
            );
            // Given, or needed by backups (`backups_keep_what_upstream_kept`).
            let root = db.get("root_password").filter(|v| !v.is_null()).is_some()
                || !upstream["backup"].is_null();
            assert_eq!(
                our_db.get("root_password"),
                root.then(|| serde_json::json!({"secret": "MYSQL_ROOT_PASSWORD"}))
                    .as_ref(),
                "{}",
                at("root_password")
            );
        } else {
            let toml = project.read(&format!("build/{name}/storage/tracker/etc/tracker.toml"));
            let file = db["database_name"].as_str().unwrap();
            assert!(
                toml.contains(&format!("/database/{file}\"")),
                "{}",
                at(&toml)
            );
        }
        assert_eq!(
            ours["http_api"]["admin_token"],
            serde_json::json!({"secret": "TRACKER_ADMIN_TOKEN"})
        );

        // Monitoring.
        let interval = &upstream["prometheus"]["scrape_interval_in_secs"];
        assert_eq!(
            env["prometheus"]["scrape_interval"],
            *interval,
            "{}",
            at("prometheus")
        );
        if let Some(seconds) = interval.as_u64() {
            let config = project.read(&format!(
                "build/{name}/storage/prometheus/etc/prometheus.yml"
            ));
            assert!(
                config.contains(&format!("scrape_interval: {seconds}s")),
                "{}",
                at(&config)
            );
        }
        let grafana = &upstream["grafana"];
        assert_eq!(
            env["grafana"]["admin_user"],
            grafana["admin_user"],
            "{}",
            at("grafana")
        );
        if !grafana.is_null() {
            assert_eq!(
                env["grafana"]["admin_password"],
                serde_json::json!({"secret": "GRAFANA_ADMIN_PASSWORD"})
            );
            let domain = tls_domain(grafana);
            assert_eq!(
                env["grafana"].get("domain").unwrap_or(&Value::Null),
                &domain,
                "{}",
                at("grafana domain")
            );
            let expected: &[&str] = if domain.is_null() {
                &["0.0.0.0:3000/tcp"]
            } else {
                &[]
            };
            assert_eq!(
                published(&stack, "grafana"),
                expected,
                "{}",
                at("grafana publish")
            );
        }

        // Backups (their `keep`: `backups_keep_what_upstream_kept`).
        let backup = &upstream["backup"];
        if !backup.is_null() {
            assert_eq!(
                env["backup"]["schedule"],
                backup["schedule"],
                "{}",
                at("backup")
            );
        }
        assert_eq!(
            env.get("backup").is_some(),
            !backup.is_null(),
            "{}",
            at("backup")
        );

        // SSH, with the upstream deployer's defaults.
        let ssh = &upstream["ssh_credentials"];
        assert_eq!(
            env["deploy"]["user"],
            *ssh.get("username").unwrap_or(&"torrust".into()),
            "{}",
            at("user")
        );
        assert_eq!(
            env["deploy"]["port"],
            *ssh.get("port").unwrap_or(&22.into()),
            "{}",
            at("port")
        );
    }
}

#[test]
fn backups_keep_what_upstream_kept() {
    for (fixture, schedule, keep) in [
        ("full-stack-lxd", "0 2 * * *", 7),
        // Every 4 hours for 14 days.
        ("backup-focused", "0 */4 * * *", 84),
    ] {
        let (run, project, name) =
            import(&repo_root().join(format!("tests/fixtures/upstream/{fixture}.json")));
        let stdout = run.expect(0).stdout();
        let env = json(&project.read(&format!("environments/{name}.json")));
        assert_eq!(env["backup"]["schedule"], schedule, "{fixture}");
        assert_eq!(env["backup"]["keep"], keep, "{fixture}");
        assert_eq!(
            env["backup"]["path"],
            format!("/srv/tracker-gitops/{name}/backups")
        );
        assert!(
            project
                .join(&format!("build/{name}/docker-compose.yml"))
                .is_file()
        );
        // MySQL backups need the root password, which upstream generated.
        assert_eq!(
            env["tracker"]["core"]["database"]["root_password"],
            serde_json::json!({"secret": "MYSQL_ROOT_PASSWORD"})
        );
        if fixture == "backup-focused" {
            assert!(stdout.contains("MYSQL_ROOT_PASSWORD      the value of MYSQL_ROOT_PASSWORD in /opt/torrust/.env on the VM"), "{stdout}");
        }
    }
}

#[test]
fn https_carries_over_only_with_a_service_to_serve() {
    // Upstream's `https` without `use_tls_proxy` anywhere serves nothing.
    let (run, project) = import_text(&edited(|v| {
        v["https"] = serde_json::json!({"admin_email": "ops@example.com"});
    }));
    run.expect(0)
        .expect_stderr("`https` is not carried over [not-imported]")
        .expect_stderr("hint: no service has `use_tls_proxy`");
    assert!(
        json(&project.read("environments/minimal-lxd.json"))
            .get("https")
            .is_none()
    );

    // A service behind TLS without `https`: invalid upstream too, located there.
    let (run, _) = import_text(&edited(|v| {
        v["tracker"]["http_api"]["domain"] = "api.example.com".into();
        v["tracker"]["http_api"]["use_tls_proxy"] = true.into();
    }));
    run.expect(1)
        .expect_stderr("upstream.json:")
        .expect_stderr("[domain-without-https]")
        .expect_stderr("at: /tracker/http_api/domain");
}

/// Every secret value of an upstream file: its secret fields, wherever they are.
fn secret_values(value: &Value, found: &mut Vec<String>) {
    const SECRET_KEYS: [&str; 4] = ["admin_token", "password", "root_password", "admin_password"];
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match child {
                    Value::String(s)
                        if SECRET_KEYS.contains(&key.as_str()) || key == "api_token" =>
                    {
                        found.push(s.clone())
                    }
                    _ => secret_values(child, found),
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|v| secret_values(v, found)),
        _ => {}
    }
}

/// Every file under `dir`, with its content.
fn files(dir: &Path, found: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, found);
        } else {
            found.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
}

#[test]
fn no_secret_value_reaches_a_file_or_the_output() {
    let mut checked = 0;
    for fixture in fixtures() {
        let mut secrets = Vec::new();
        secret_values(
            &json(&std::fs::read_to_string(&fixture).unwrap()),
            &mut secrets,
        );
        assert!(
            secrets.iter().all(|s| s.contains("-SECRET-")),
            "{secrets:?}"
        );
        let (run, project, _) = import(&fixture);
        let run = run.expect(0);
        let mut written = Vec::new();
        files(project.path(), &mut written);
        assert!(written.len() > 5, "{written:?}");
        for secret in &secrets {
            assert!(
                !run.stdout().contains(secret.as_str()),
                "{secret} on stdout"
            );
            assert!(
                !run.stderr().contains(secret.as_str()),
                "{secret} on stderr"
            );
            for (path, content) in &written {
                let text = String::from_utf8_lossy(content);
                assert!(
                    !text.contains(secret.as_str()),
                    "{secret} in {}",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} secrets checked");
}

#[test]
fn each_secret_is_named_for_github_and_its_value_shown_only_on_a_terminal() {
    let fixture = repo_root().join("tests/fixtures/upstream/full-stack-lxd.json");
    let (run, _, _) = import(&fixture);
    let stdout = run.expect(0).stdout();
    for (name, from) in [
        ("TRACKER_ADMIN_TOKEN", "/tracker/http_api/admin_token"),
        ("MYSQL_PASSWORD", "/tracker/core/database/password"),
        (
            "MYSQL_ROOT_PASSWORD",
            "/tracker/core/database/root_password",
        ),
        ("GRAFANA_ADMIN_PASSWORD", "/grafana/admin_password"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(name) && l.ends_with(from)),
            "{name}:\n{stdout}"
        );
    }

    // Not a terminal: refused before anything is written.
    let project = Project::new();
    project
        .run(&["import", fixture.to_str().unwrap(), "--show-secret-values"])
        .expect(2)
        .expect_stderr("only to a terminal");
    assert!(!project.join("environments").exists());

    // On a terminal, the values are shown.
    let shown = on_a_terminal(
        &project,
        &[fixture.to_str().unwrap(), "--show-secret-values"],
    );
    assert!(
        shown.contains("/tracker/http_api/admin_token: full-stack-SECRET-admin-token"),
        "{shown}"
    );
}

/// `import ARGS` run in `project` on a pseudo-terminal (from `script`): its
/// output, standard output and error mixed as a terminal shows them.
fn on_a_terminal(project: &Project, args: &[&str]) -> String {
    let binary = assert_cmd::cargo::cargo_bin("tracker-gitops");
    let mut command = format!("'{}' import", binary.display());
    for arg in args {
        command.push_str(&format!(" '{arg}'"));
    }
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(project.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn lines_quoted_on_a_terminal_hide_the_secrets_on_them() {
    // One line holds both a bad address and the token.
    let fixture = repo_root().join("tests/fixtures/upstream/minimal-lxd.json");
    let text = std::fs::read_to_string(fixture).unwrap().replace(
        "{\n      \"bind_address\": \"0.0.0.0:1212\",\n      \"admin_token\": \"minimal-SECRET-admin-token\"\n    }",
        "{ \"admin_token\": \"minimal-SECRET-admin-token\", \"bind_address\": \"localhost:1212\" }",
    );
    assert!(text.contains("\"localhost:1212\""));
    let project = Project::new();
    project.write("upstream.json", &text);
    let shown = on_a_terminal(&project, &["upstream.json"]);
    assert!(shown.contains("is not an `ip:port` address"), "{shown}");
    assert!(
        shown.contains(
            "\"admin_token\": \"**************************\", \"bind_address\": \"localhost:1212\""
        ),
        "{shown}"
    );
    assert!(!shown.contains("-SECRET-"), "{shown}");

    // A file that does not even parse has every string hidden.
    project.write(
        "broken.json",
        "{\"admin_token\": \"minimal-SECRET-admin-token\",}",
    );
    let shown = on_a_terminal(&project, &["broken.json"]);
    assert!(
        shown.contains("[syntax-error]") && !shown.contains("-SECRET-"),
        "{shown}"
    );
}

fn import_text(text: &str) -> (Run, Project) {
    let project = Project::new();
    project.write("upstream.json", text);
    let run = project.run(&["import", "upstream.json"]);
    (run, project)
}

/// A valid upstream file (the `minimal-lxd` fixture) with `edit` applied.
fn edited(edit: impl FnOnce(&mut Value)) -> String {
    let fixture = repo_root().join("tests/fixtures/upstream/minimal-lxd.json");
    let mut value = json(&std::fs::read_to_string(fixture).unwrap());
    edit(&mut value);
    serde_json::to_string_pretty(&value).unwrap()
}

#[test]
fn an_invalid_upstream_file_gets_located_errors_and_nothing_is_written() {
    let cases = [
        (
            "schema",
            r#"{
  "environment": { "name": "broken" },
  "ssh_credentials": { "private_key_path": "k", "public_key_path": "k.pub", "port": 70000 },
  "provider": { "provider": "lxd" },
  "tracker": {
    "core": { "private": "no", "database": { "driver": "sqlite3" } },
    "udp_trackers": [{ "bind_address": "0.0.0.0:6969" }],
    "http_trackers": [{ "bind_address": "0.0.0.0:7070", "use_tls_proxy": true }],
    "http_api": { "bind_address": "0.0.0.0:1212", "admin_token": 987654321 },
    "health_check_api": { "bind_address": "127.0.0.1:1313" }
  },
  "prometheus": { "scrape_interval_in_sec": 15 }
}
"#
            .to_string(),
        ),
        (
            "address",
            edited(|v| v["tracker"]["http_api"]["bind_address"] = "localhost:1212".into()),
        ),
        (
            "result",
            edited(|v| {
                v["tracker"]["core"]["database"] = serde_json::json!({
                    "driver": "mysql", "host": "mysql", "port": 3306, "database_name": "t",
                    "username": "root", "password": "p-SECRET-p"
                });
                v["tracker"]["http_trackers"][0]["bind_address"] = "0.0.0.0:1212".into();
                v["grafana"] =
                    serde_json::json!({"admin_user": "admin", "admin_password": "g-SECRET-g"});
            }),
        ),
        (
            "name",
            edited(|v| v["environment"]["name"] = "Not A Name".into()),
        ),
    ];
    for (case, text) in cases {
        let (run, project) = import_text(&text);
        let run = run.expect(1);
        let stderr = run.stderr();
        assert!(stderr.starts_with("upstream.json:"), "{case}:\n{stderr}");
        assert!(
            !stderr.contains("987654321") && !stderr.contains("-SECRET-"),
            "{case}: a secret echoed"
        );
        assert!(
            !project.join("environments").exists(),
            "{case}: something written"
        );
        insta::assert_snapshot!(format!("import-invalid-{case}"), stderr);
    }
}

#[test]
fn a_file_that_is_not_an_upstream_environment_is_refused() {
    let ours = std::fs::read_to_string(repo_root().join("environments/staging.json")).unwrap();
    for (text, why) in [
        (
            ours.as_str(),
            "is a tracker-gitops environment file already",
        ),
        ("[1, 2]", "it is not a JSON object"),
        ("{\"tracker\": {}}", "it has none of its sections"),
        ("name = \"x\"\n", "it is not a JSON document"),
    ] {
        let (run, project) = import_text(text);
        run.expect(2).expect_stderr(why);
        assert!(!project.join("environments").exists());
    }
    let (run, _) = import_text("{\"environment\": {\"name\": \"x\"},}");
    run.expect(2)
        .expect_stderr("upstream.json:1:")
        .expect_stderr("[syntax-error]");
}

#[test]
fn an_existing_environment_is_never_overwritten_and_name_picks_another() {
    let fixture = repo_root().join("tests/fixtures/upstream/minimal-lxd.json");
    let (run, project, name) = import(&fixture);
    run.expect(0);
    let path = format!("environments/{name}.json");
    project.write(&path, "{}\n");
    let fixture = fixture.to_str().unwrap();
    project
        .run(&["import", fixture])
        .expect(2)
        .expect_stderr("already exists");
    assert_eq!(project.read(&path), "{}\n");
    project
        .run(&["import", fixture, "--name", "Bad Name"])
        .expect(2)
        .expect_stderr("must be lowercase letters");
    project
        .run(&["import", fixture, "--name", "second"])
        .expect(0);
    let second = json(&project.read("environments/second.json"));
    assert_eq!(second["deploy"]["path"], "/srv/tracker-gitops/second");
    assert!(project.join("build/second/docker-compose.yml").is_file());
}

#[test]
fn the_result_is_checked_against_the_environments_already_there() {
    let project = Project::with_examples();
    project.edit_json("environments/staging.json", |v| {
        v["deploy"]["branch"] = "deploy/minimal-lxd".into();
    });
    let fixture = repo_root().join("tests/fixtures/upstream/minimal-lxd.json");
    project
        .run(&["import", fixture.to_str().unwrap()])
        .expect(1)
        .expect_stderr("environments/minimal-lxd.json:")
        .expect_stderr("[branch-collision]")
        .expect_stderr("note: environments/staging.json:");
    assert!(!project.join("environments/minimal-lxd.json").exists());
    assert!(!project.join("build/minimal-lxd").exists());
}

#[test]
fn a_file_named_from_a_subdirectory_is_found_and_the_result_goes_to_the_root() {
    let project = Project::with_examples();
    project.git(&["init", "-q"]);
    let fixture = repo_root().join("tests/fixtures/upstream/udp-only.json");
    project.write("upstream/env.json", std::fs::read(fixture).unwrap());
    let mut command = project.command(&["import", "env.json"]);
    let output = command
        .current_dir(project.join("upstream"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(project.join("environments/udp-only.json").is_file());
    assert!(project.join("build/udp-only/docker-compose.yml").is_file());
}

#[test]
#[ignore = "needs .ci/install: docker compose, caddy"]
fn compose_and_caddy_accept_every_imported_stack() {
    for fixture in fixtures() {
        let upstream = json(&std::fs::read_to_string(&fixture).unwrap());
        let (run, project, name) = import(&fixture);
        run.expect(0);
        let config = crate::render::compose_config(&project, &name);
        let mut services: Vec<&str> = config["services"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        services.sort_unstable();
        let env = json(&project.read(&format!("environments/{name}.json")));
        let mut expected = vec!["tracker"];
        for (section, service) in [
            ("prometheus", "prometheus"),
            ("grafana", "grafana"),
            ("https", "caddy"),
            ("backup", "backup"),
        ] {
            if env.get(section).is_some() {
                expected.push(service);
            }
        }
        if upstream["tracker"]["core"]["database"]["driver"] == "mysql" {
            expected.push("mysql");
        }
        expected.sort_unstable();
        assert_eq!(services, expected, "{name}");
        if env.get("https").is_some() {
            crate::render::caddy_validate(&project, &name);
        }
    }
}
