//! `render` and `render --check`, with the output checked by the real tools that
//! will consume it: Docker Compose v2, promtool and the torrust tracker.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Project, repo_root, tool, tracker_bin_dir};

const SECRETS: &[(&str, &str)] = &[
    ("TRACKER_ADMIN_TOKEN", "render-test-token-3b1f"),
    ("MYSQL_PASSWORD", "render-test-mysql-9c2e"),
    ("MYSQL_ROOT_PASSWORD", "render-test-root-77aa"),
    ("GRAFANA_ADMIN_PASSWORD", "render-test-grafana-5d0c"),
];

fn rendered_examples() -> Project {
    let project = Project::with_examples();
    project.run(&["render"]).expect(0);
    project
}

#[test]
fn the_committed_build_is_up_to_date() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tracker-gitops"))
        .current_dir(repo_root())
        .args(["render", "--check"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "build/ is stale:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn check_reports_files_to_update_create_and_delete() {
    let project = rendered_examples();
    project.run(&["render", "--check"]).expect(0);
    std::fs::remove_file(project.join("build/stable/docker-compose.yml")).unwrap();
    project.write("build/stable/notes.txt", "hand-made\n");
    let toml = project.read("build/staging/storage/tracker/etc/tracker.toml");
    project.write(
        "build/staging/storage/tracker/etc/tracker.toml",
        toml.replace("interval = 120", "interval = 60"),
    );
    // A rendered environment whose file is gone, and a directory of someone else's.
    project.write("build/retired/docker-compose.yml", "x");
    project.write("build/retired/.tracker-gitops/stack.json", "{}");
    project.write("build/notes/todo.txt", "keep me\n");
    let run = project.run(&["render", "--check"]).expect(1);
    let out = run.stdout();
    assert!(
        out.contains("build/stable: out of date (1 to create, 1 to delete)"),
        "{out}"
    );
    assert!(out.contains("  create: docker-compose.yml"), "{out}");
    assert!(out.contains("  delete: notes.txt"), "{out}");
    assert!(
        out.contains("build/staging: out of date (1 to update)"),
        "{out}"
    );
    assert!(
        out.contains("--- a/build/staging/storage/tracker/etc/tracker.toml\n+++ b/build/staging/storage/tracker/etc/tracker.toml\n"),
        "{out}"
    );
    assert!(out.contains("-interval = 60\n+interval = 120\n"), "{out}");
    assert!(out.contains("build/retired: to delete"), "{out}");
    // --check wrote nothing.
    assert!(!project.join("build/stable/docker-compose.yml").exists());
    // render puts everything back and removes what no environment produces.
    project.run(&["render"]).expect(0);
    project.run(&["render", "--check"]).expect(0);
    assert!(!project.join("build/stable/notes.txt").exists());
    assert!(!project.join("build/retired").exists());
    assert_eq!(project.read("build/notes/todo.txt"), "keep me\n");
}

/// `render --check --format json`: the drift of each environment and file
/// as one object (the snapshot is its documented shape); `render --format
/// json` says what it wrote.
#[test]
fn check_as_json_reports_drift_per_environment_and_file() {
    let project = rendered_examples();
    let toml = project.read("build/staging/storage/tracker/etc/tracker.toml");
    project.write(
        "build/staging/storage/tracker/etc/tracker.toml",
        toml.replace("interval = 120", "interval = 60"),
    );
    std::fs::remove_file(project.join("build/stable/docker-compose.yml")).unwrap();
    project.write("build/retired/.tracker-gitops/stack.json", "{}");
    let run = project
        .run(&["render", "--check", "--format", "json"])
        .expect(1);
    let out = run.stdout();
    assert!(out.starts_with("{\n  \"format_version\": 1,\n"), "{out}");
    insta::assert_snapshot!("check-json", out);

    let written: Value = serde_json::from_str(
        &project
            .run(&["render", "--format", "json"])
            .expect(0)
            .stdout(),
    )
    .unwrap();
    assert_eq!(written["environments"][1]["state"], "written");
    assert_eq!(written["orphans"][0]["deleted"], true);
    let clean: Value = serde_json::from_str(
        &project
            .run(&["render", "--check", "--format", "json"])
            .expect(0)
            .stdout(),
    )
    .unwrap();
    assert_eq!(clean["up_to_date"], true);
    assert_eq!(clean["environments"][2]["state"], "up-to-date");

    // Invalid files: their diagnostics on stderr, still one object on stdout.
    project.write("environments/staging.json", "{ \"tracker\": 1 }");
    let run = project
        .run(&["render", "--check", "--format", "json"])
        .expect(2)
        .expect_stderr("environments/staging.json");
    let failed: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        failed,
        json!({
            "format_version": 1,
            "error": { "code": "invalid-environments", "message": "invalid environment files" }
        })
    );
}

/// What a run printed on both streams, cut into lines the way the GitHub
/// runner cuts them (at `\n` and at `\r`) when it looks for workflow commands.
fn runner_lines(run: &crate::harness::Run) -> Vec<String> {
    let both = format!("{}\n{}", run.stdout(), run.stderr());
    both.split(['\n', '\r']).map(str::to_string).collect()
}

#[test]
fn check_and_publish_never_follow_a_symlink_in_build() {
    const MARKER: &str = "outside-build-marker-5e1d";
    for (link, target) in [
        // A rendered file replaced by a link to a file outside build/.
        ("build/stable/docker-compose.yml", "outside/secret.txt"),
        // A link to a directory, and a whole environment as a link.
        ("build/staging/storage/linked", "outside"),
        ("build/production", "outside"),
    ] {
        let project = Project::with_examples_in_git();
        project.write("outside/secret.txt", format!("{MARKER}\n"));
        project.write("outside/.tracker-gitops/stack.json", MARKER);
        let path = project.join(link);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir_all(&path);
        std::os::unix::fs::symlink(project.join(target), &path).unwrap();
        for args in [&["render", "--check"][..], &["publish"], &["render"]] {
            let run = project
                .run(args)
                .expect(2)
                .expect_stderr(&format!("error: {link} is a symbolic link: "));
            assert!(
                !run.stdout().contains(MARKER) && !run.stderr().contains(MARKER),
                "{args:?} {link}: the link was followed:\n{}{}",
                run.stdout(),
                run.stderr()
            );
        }
        // Nothing was replaced or removed.
        assert!(path.symlink_metadata().unwrap().is_symlink());
    }
}

#[test]
fn a_link_beside_the_rendered_environments_is_neither_followed_nor_removed() {
    let project = rendered_examples();
    project.write("outside/.tracker-gitops/stack.json", "{}");
    std::os::unix::fs::symlink(project.join("outside"), project.join("build/elsewhere")).unwrap();
    project.run(&["render", "--check"]).expect(0);
    project.run(&["render"]).expect(0);
    assert!(
        project
            .join("build/elsewhere/.tracker-gitops/stack.json")
            .is_file()
    );
}

#[test]
fn orphaned_file_names_cannot_inject_workflow_commands() {
    let project = rendered_examples();
    project.write(
        "build/stable/notes\n::error::pwned",
        "x\r::error::pwned-by-content\n",
    );
    let output = project
        .command(&["render", "--check"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let run = crate::harness::Run(output).expect(1);
    for line in runner_lines(&run) {
        assert!(
            !line.starts_with("::error::pwned"),
            "{line:?} in:\n{}",
            run.stdout()
        );
    }
    let out = run.stdout();
    assert!(
        out.contains(
            "  delete: notes\\n::error::pwned\n\
             --- a/build/stable/notes\\n::error::pwned\n+++ /dev/null\n@@ -1,2 +0,0 @@\n\
             -x\r-::error::pwned-by-content\n"
        ),
        "{out}"
    );
}

#[test]
fn an_invalid_environment_writes_nothing() {
    let project = rendered_examples();
    let before = project.read("build/staging/docker-compose.yml");
    project.edit_json("environments/staging.json", |env| {
        env["prometheus"]["scrape_interval"] = json!(30);
    });
    project.edit_json("environments/stable.json", |env| {
        env["tracker"]["core"]["private"] = json!("no")
    });
    let run = project.run(&["render"]).expect(2);
    assert!(
        run.stderr().contains("environments/stable.json:"),
        "{}",
        run.stderr()
    );
    assert_eq!(project.read("build/staging/docker-compose.yml"), before);
    project.run(&["render", "--check"]).expect(2);
    project.run(&["render", "--env", "nonexistent"]).expect(2);
}

#[test]
fn rendering_is_deterministic_and_holds_no_secret() {
    let first = rendered_examples();
    let second = Project::with_examples();
    let mut command = second.command(&["render"]);
    for (name, value) in SECRETS {
        command.env(name, value);
    }
    assert!(command.output().unwrap().status.success());
    for env in ["production", "stable", "staging"] {
        let dir = format!("build/{env}");
        let a = tracker_gitops::tree::Tree::read_dir(&first.join(&dir)).unwrap();
        let b = tracker_gitops::tree::Tree::read_dir(&second.join(&dir)).unwrap();
        assert_eq!(a, b, "{env}");
        for (path, bytes) in a.iter() {
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            assert!(text.ends_with('\n') && !text.contains('\r'), "{path}");
            assert!(
                text.starts_with("# Generated by tracker-gitops from environments/")
                    || path.ends_with(".json"),
                "{path}"
            );
            for (_, value) in SECRETS {
                assert!(!text.contains(value), "{path} holds a secret");
            }
        }
    }
}

#[test]
#[ignore = "needs .ci/install: docker compose"]
fn removing_prometheus_drops_its_service_network_volume_and_config() {
    let project = rendered_examples();
    let with = tracker_gitops::tree::Tree::read_dir(&project.join("build/staging")).unwrap();
    let original = project.read("environments/staging.json");
    project.edit_json("environments/staging.json", |env| {
        env.as_object_mut().unwrap().remove("prometheus");
    });
    project.run(&["render"]).expect(0);
    let compose = compose_config(&project, "staging");
    let services: BTreeSet<_> = compose["services"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(services, BTreeSet::from(["tracker".to_string()]));
    assert!(
        compose
            .get("volumes")
            .is_none_or(|v| v.as_object().unwrap().is_empty()),
        "{compose:#}"
    );
    assert!(compose.get("secrets").is_none(), "{compose:#}");
    let networks: Vec<_> = compose["networks"]
        .as_object()
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(
        networks,
        ["default"],
        "only compose's implicit network remains"
    );
    assert!(!project.join("build/staging/storage/prometheus").exists());
    project.write("environments/staging.json", original);
    project.run(&["render"]).expect(0);
    let restored = tracker_gitops::tree::Tree::read_dir(&project.join("build/staging")).unwrap();
    assert_eq!(with, restored);
}

#[test]
#[ignore = "needs .ci/install: docker compose"]
fn a_changed_setting_changes_only_that_services_config_hash() {
    let project = rendered_examples();
    let before = compose_config(&project, "production");
    project.edit_json("environments/production.json", |env| {
        env["tracker"]["core"]["announce_policy"]["interval"] = json!(300);
    });
    project.run(&["render"]).expect(0);
    let after = compose_config(&project, "production");
    let hash = |compose: &Value, service: &str| {
        compose["services"][service]["labels"]["tracker-gitops.config-hash"].clone()
    };
    assert_ne!(hash(&before, "tracker"), hash(&after, "tracker"));
    for service in ["mysql", "prometheus", "grafana", "caddy"] {
        assert_eq!(
            before["services"][service], after["services"][service],
            "{service}"
        );
    }
}

#[test]
#[ignore = "needs .ci/install: docker compose"]
fn an_https_setting_changes_only_caddy() {
    let project = rendered_examples();
    let before = compose_config(&project, "production");
    project.edit_json("environments/production.json", |env| {
        env["https"]["email"] = json!("security@example.org");
        env["https"]["ca"] = json!("letsencrypt-staging");
    });
    project.run(&["render"]).expect(0);
    let after = compose_config(&project, "production");
    let hash = |compose: &Value| {
        compose["services"]["caddy"]["labels"]["tracker-gitops.config-hash"].clone()
    };
    assert_ne!(hash(&before), hash(&after));
    for service in ["tracker", "mysql", "prometheus", "grafana"] {
        assert_eq!(
            before["services"][service], after["services"][service],
            "{service}"
        );
    }
    let caddy = &after["services"]["caddy"];
    let published: Vec<_> = caddy["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["published"].as_str().unwrap(),
                p["target"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(published, [("80", 80), ("443", 443)]);
    assert_eq!(
        after["volumes"]["caddy_data"]["name"],
        "tracker-production_caddy_data"
    );
    let tracker_ports: Vec<_> = after["services"]["tracker"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["target"].as_u64().unwrap())
        .collect();
    assert_eq!(tracker_ports, [6969], "7070 and 1212 are behind Caddy only");
    assert!(after["services"]["grafana"].get("ports").is_none());
}

/// `caddy validate` (the real Caddy) on a rendered Caddyfile, its
/// container paths mapped to the rendered tree.
fn caddy_validate(project: &Project, env: &str) -> String {
    let dir = project.join(&format!("build/{env}/storage/caddy/etc"));
    let text = std::fs::read_to_string(dir.join("Caddyfile")).unwrap();
    let local = dir.join("local.Caddyfile");
    std::fs::write(
        &local,
        text.replace("/etc/caddy/", &format!("{}/", dir.display())),
    )
    .unwrap();
    let output = tool("caddy")
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(&local)
        // Caddy writes its state under these; keep it in the project.
        .env("XDG_DATA_HOME", project.join("caddy-data"))
        .env("XDG_CONFIG_HOME", project.join("caddy-config"))
        .output()
        .expect("caddy is installed (.ci/install)");
    assert!(
        output.status.success(),
        "{env}: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

#[test]
#[ignore = "needs .ci/install: caddy"]
fn caddy_accepts_the_rendered_caddyfiles() {
    let project = rendered_examples();
    let text = caddy_validate(&project, "production");
    assert!(text.contains("acme_ca https://acme-v02.api.letsencrypt.org/directory"));
    for (name, _) in SECRETS {
        assert!(!text.contains(name), "no secret, not even by name: {name}");
    }
    assert!(!text.contains("{$"), "no environment placeholder");

    // Every service behind Caddy, three sharing a domain, a private CA.
    let root =
        std::fs::read_to_string(repo_root().join("tests/fixtures/https/ca-root.pem")).unwrap();
    project.edit_json("environments/production.json", |env| {
        env["tracker"]["health_check_api"]["domain"] = json!("tracker.example.org");
        env["tracker"]["http_trackers"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "bind_address": "0.0.0.0:7071", "domain": "eu.tracker.example.org" }));
        env["https"]["ca"] = json!("https://acme.internal.example.org:14000/dir");
        env["https"]["ca_root"] = json!(root);
    });
    project.run(&["render", "--env", "production"]).expect(0);
    let text = caddy_validate(&project, "production");
    assert!(
        text.contains("acme_ca_root /etc/caddy/ca-root.pem"),
        "{text}"
    );
    assert!(text.contains("handle /health_check {"), "{text}");
    assert!(text.contains("eu.tracker.example.org {"), "{text}");
    assert_eq!(
        project.read("build/production/storage/caddy/etc/ca-root.pem"),
        root
    );
    let toml = project.read("build/production/storage/tracker/etc/tracker.toml");
    assert!(
        toml.contains("[health_check_api]\nbind_address = \"0.0.0.0:1313\""),
        "Caddy reaches the health check from its own container: {toml}"
    );
}

/// `docker compose config` (the real Compose v2) on a rendered environment, as JSON.
fn compose_config(project: &Project, env: &str) -> Value {
    let mut command = tool("docker");
    command
        .args([
            "compose",
            "--file",
            "docker-compose.yml",
            "config",
            "--format",
            "json",
        ])
        .current_dir(project.join(&format!("build/{env}")));
    for (name, value) in SECRETS {
        command.env(name, value);
    }
    let output = command
        .output()
        .expect("docker compose is installed (.ci/install)");
    assert!(
        output.status.success(),
        "{env}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
#[ignore = "needs .ci/install: docker compose"]
fn compose_accepts_every_example_with_the_expected_services() {
    let project = rendered_examples();
    let expected = [
        (
            "production",
            vec![
                "backup",
                "caddy",
                "grafana",
                "mysql",
                "prometheus",
                "tracker",
            ],
        ),
        ("stable", vec!["tracker"]),
        ("staging", vec!["prometheus", "tracker"]),
    ];
    for (env, services) in expected {
        let compose = compose_config(&project, env);
        let names: Vec<_> = compose["services"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(names, services, "{env}");
        let tracker = &compose["services"]["tracker"];
        let published: Vec<_> = tracker["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["target"].as_u64().unwrap())
            .collect();
        assert!(
            !published.contains(&1313),
            "{env}: the health-check API is never published"
        );
        assert_eq!(
            tracker["environment"]["TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN"],
            "render-test-token-3b1f"
        );
    }
    let production = compose_config(&project, "production");
    let prometheus = &production["services"]["prometheus"];
    assert_eq!(prometheus["ports"][0]["host_ip"], "127.0.0.1");
    assert_eq!(prometheus["tty"], true);
    assert_eq!(
        prometheus["depends_on"]["tracker"]["condition"],
        "service_started"
    );
    assert_eq!(
        production["services"]["tracker"]["depends_on"]["mysql"]["condition"],
        "service_healthy"
    );
    assert!(production["services"]["mysql"].get("ports").is_none());

    // Without the secrets, compose refuses and names the missing one.
    let output = tool("docker")
        .args(["compose", "config", "--quiet"])
        .current_dir(project.join("build/staging"))
        .env_remove("TRACKER_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("secret TRACKER_ADMIN_TOKEN is not set")
    );
}

#[test]
#[ignore = "needs .ci/install: promtool"]
fn promtool_accepts_every_prometheus_config() {
    let project = rendered_examples();
    for env in ["production", "staging"] {
        let path = project.join(&format!(
            "build/{env}/storage/prometheus/etc/prometheus.yml"
        ));
        // --syntax-only: the token file exists only inside the container.
        let output = tool("promtool")
            .args(["check", "config", "--syntax-only"])
            .arg(&path)
            .output()
            .expect("promtool is installed (.ci/install)");
        assert!(
            output.status.success(),
            "{env}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("credentials_file: \"/run/secrets/tracker_admin_token\""));
        assert!(text.contains("targets: [\"tracker:1212\"]"));
    }
}

/// Dotted key paths of a TOML document, array-of-tables without their index.
fn toml_keys(value: &toml::Value, prefix: &str, keys: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                toml_keys(value, &path, keys);
            }
        }
        toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
            for item in items {
                toml_keys(item, prefix, keys);
            }
        }
        _ => {
            keys.insert(prefix.to_string());
        }
    }
}

#[test]
fn schema_3_configs_use_only_keys_the_tracker_accepts() {
    let allowed: BTreeSet<String> =
        std::fs::read_to_string(repo_root().join("tests/data/tracker-config-v3-keys.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_string)
            .collect();
    let project = rendered_examples();
    for env in ["production", "staging"] {
        let text = project.read(&format!("build/{env}/storage/tracker/etc/tracker.toml"));
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(value["metadata"]["schema_version"].as_str(), Some("3.0.0"));
        let mut keys = BTreeSet::new();
        toml_keys(&value, "", &mut keys);
        let unknown: Vec<_> = keys.difference(&allowed).collect();
        assert!(
            unknown.is_empty(),
            "{env}: keys schema 3.0.0 rejects: {unknown:?}"
        );
        assert!(
            keys.contains("logging.trace_filter"),
            "schema 3.0.0 needs an explicit trace filter"
        );
    }
}

/// Starts the real torrust-tracker 3.0.0 on the rendered schema 2.0.0 config and
/// waits for its health check to report every listener up.
#[test]
#[ignore = "needs .ci/install: torrust-tracker binaries"]
fn tracker_binary_loads_the_schema_2_config() {
    let project = rendered_examples();
    let config = project.join("build/stable/storage/tracker/etc/tracker.toml");
    let data = project.join("tracker-data");
    std::fs::create_dir_all(&data).unwrap();
    let bin = tracker_bin_dir();
    let mut tracker = std::process::Command::new(bin.join("torrust-tracker"))
        .env("TORRUST_TRACKER_CONFIG_TOML_PATH", &config)
        .env(
            "TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN",
            "render-test-token-3b1f",
        )
        // The container path of the database does not exist on this host.
        .env(
            "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH",
            data.join("sqlite3.db"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("torrust-tracker 3.0.0 is installed (.ci/install)");
    let deadline = Instant::now() + Duration::from_secs(30);
    let healthy = loop {
        let check = std::process::Command::new(bin.join("http_health_check"))
            .arg("http://127.0.0.1:1313/health_check")
            .output()
            .unwrap();
        if check.status.success() {
            break true;
        }
        if Instant::now() > deadline || tracker.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = tracker.kill();
    let output = tracker.wait_with_output().unwrap();
    assert!(
        healthy,
        "the tracker did not come up:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn templates_can_be_overridden_by_name_and_errors_point_into_them() {
    let project = rendered_examples();
    let original =
        std::fs::read_to_string(repo_root().join("templates/prometheus.yml.hbs")).unwrap();
    project.write(
        "my-templates/prometheus.yml.hbs",
        original.replace("scrape_configs:", "# tweaked\nscrape_configs:"),
    );
    project
        .run(&["render", "--templates", "my-templates"])
        .expect(0);
    assert!(
        project
            .read("build/staging/storage/prometheus/etc/prometheus.yml")
            .contains("# tweaked")
    );
    project.run(&["render", "--check"]).expect(1);

    project.write("typo/prometheus.yaml.hbs", "x");
    let run = project.run(&["render", "--templates", "typo"]).expect(2);
    assert!(
        run.stderr()
            .contains("unknown template `prometheus.yaml.hbs`"),
        "{}",
        run.stderr()
    );

    project.write(
        "broken/prometheus.yml.hbs",
        "line one\n{{#if prometheus}}\nunclosed\n",
    );
    let run = project.run(&["render", "--templates", "broken"]).expect(2);
    assert!(
        run.stderr().contains("template prometheus.yml.hbs:"),
        "{}",
        run.stderr()
    );

    project.write(
        "strict/prometheus.yml.hbs",
        "{{header}}\n{{prometheus.no_such_field}}\n",
    );
    let run = project.run(&["render", "--templates", "strict"]).expect(2);
    assert!(
        run.stderr().contains("template prometheus.yml.hbs:2:"),
        "{}",
        run.stderr()
    );
}

mod properties {
    use std::collections::BTreeSet;
    use std::path::Path;

    use proptest::prelude::*;
    use serde_json::json;
    use tracker_gitops::environment::check_bytes;
    use tracker_gitops::render::{Templates, quote, render};

    /// Strings built from the characters that break YAML, TOML and compose
    /// files: quotes, newlines, `#`, `: `, `${`, backslashes, NUL.
    fn hostile() -> impl Strategy<Value = String> {
        proptest::string::string_regex(
            "[a-z0-9A-Z._\\-]{0,6}([\"'#:$\\{}\n\r\t\u{0} ]{0,3}[a-z0-9._-]{0,6}){0,3}",
        )
        .unwrap()
    }

    const FIELDS: &[&str] = &[
        "/description",
        "/tracker/image",
        "/tracker/core/database/database_name",
        "/prometheus/image",
        "/prometheus/retention",
        "/grafana/admin_user",
        "/grafana/domain",
        "/grafana/image",
        "/backup/schedule",
        "/backup/path",
        "/https/email",
        "/https/ca",
        "/tracker/http_trackers/0/domain",
        "/tracker/http_api/domain",
        "/deploy/host",
        "/deploy/path",
        "/deploy/branch",
    ];

    fn service_keys() -> BTreeSet<&'static str> {
        [
            "image",
            "command",
            "restart",
            "tty",
            "stop_signal",
            "labels",
            "environment",
            "ports",
            "volumes",
            "secrets",
            "networks",
            "depends_on",
            "healthcheck",
            "logging",
        ]
        .into_iter()
        .collect()
    }

    proptest! {
        /// Whatever the string, the quoted form parses back to exactly it, as
        /// YAML and as TOML, and adds no key.
        #[test]
        fn quoted_strings_round_trip(text in any::<String>()) {
            let yaml = format!("key: {}\n", quote(&text));
            let parsed: std::collections::BTreeMap<String, String> = serde_yaml_ng::from_str(&yaml).unwrap();
            prop_assert_eq!(parsed.len(), 1);
            prop_assert_eq!(&parsed["key"], &text);
            let toml_text = format!("key = {}\n", quote(&text));
            let parsed: toml::Table = toml::from_str(&toml_text).unwrap();
            prop_assert_eq!(parsed.len(), 1);
            prop_assert_eq!(parsed["key"].as_str(), Some(text.as_str()));
        }

        /// Whatever goes into a string field: either validation refuses it, or
        /// the render parses as YAML and TOML with exactly the expected
        /// services and keys.
        #[test]
        fn no_value_injects_into_the_render(field in proptest::sample::select(FIELDS), value in hostile()) {
            let mut env: serde_json::Value = serde_json::from_str(include_str!("../../environments/production.json")).unwrap();
            // SQLite, so that database_name is rendered into a path.
            env["tracker"]["core"]["database"] = json!({"driver": "sqlite3", "database_name": "db.sqlite"});
            *env.pointer_mut(field).unwrap_or_else(|| panic!("{field}")) = json!(value);
            let bytes = serde_json::to_vec(&env).unwrap();
            let Some(environment) = check_bytes(Path::new("environments/prop.json"), &bytes).environment else {
                return Ok(());
            };
            let rendered = render(&environment, &Templates::load(None).unwrap()).unwrap();
            let compose: serde_yaml_ng::Value = serde_yaml_ng::from_slice(rendered.tree.get("docker-compose.yml").unwrap()).unwrap();
            let top: BTreeSet<_> = compose.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
            prop_assert_eq!(top, ["name", "services", "networks", "volumes", "secrets"].into_iter().collect::<BTreeSet<_>>());
            let services = compose["services"].as_mapping().unwrap();
            let names: BTreeSet<_> = services.keys().map(|k| k.as_str().unwrap()).collect();
            prop_assert_eq!(names, ["tracker", "prometheus", "grafana", "backup", "caddy"].into_iter().collect::<BTreeSet<_>>());
            for (_, service) in services {
                for key in service.as_mapping().unwrap().keys() {
                    prop_assert!(service_keys().contains(key.as_str().unwrap()), "{key:?}");
                }
            }
            let tracker = std::str::from_utf8(rendered.tree.get("storage/tracker/etc/tracker.toml").unwrap()).unwrap();
            prop_assert!(toml::from_str::<toml::Table>(tracker).is_ok());
            for path in ["storage/prometheus/etc/prometheus.yml", "storage/grafana/provisioning/datasources/prometheus.yml"] {
                prop_assert!(serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(rendered.tree.get(path).unwrap()).is_ok(), "{path}");
            }
            // The Caddyfile's tokens: no value adds a line, a block, a quote
            // or a placeholder (`{…}`) to it.
            let caddyfile = std::str::from_utf8(rendered.tree.get("storage/caddy/etc/Caddyfile").unwrap()).unwrap();
            let shape = |text: &str| text.lines().map(|line| {
                line.chars().filter(|c| matches!(c, '{' | '}' | '"' | '`' | ' ' | '\t')).collect::<String>()
            }).collect::<Vec<_>>();
            let base = render(&check_bytes(Path::new("environments/prop.json"), include_bytes!("../../environments/production.json")).environment.unwrap(), &Templates::load(None).unwrap()).unwrap();
            let base = std::str::from_utf8(base.tree.get("storage/caddy/etc/Caddyfile").unwrap()).unwrap().to_string();
            // Sites merge or split by domain: compare the global options only.
            let options = |text: &str| shape(text.split("\n}\n").next().unwrap());
            prop_assert_eq!(options(caddyfile), options(&base), "{}", caddyfile);
            prop_assert_eq!(caddyfile.matches('{').count(), caddyfile.matches('}').count());
        }
    }
}
