//! The tracker's data end to end, on the loopback VM of `deploy.rs`: MySQL
//! (MariaDB from Debian's packages) with a password URL-encoding must get
//! right, then SQLite; for each, data that survives a restart, an online
//! backup while announces keep succeeding, and a restore after the data is
//! dropped. Must run as root.

use std::process::Command as Std;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::deploy::{
    Ctx, INFOHASH, Vm, container, e2e_project, environment, http_get, http_request, random_hex, sh,
    tracker_health, vm_state,
};
use crate::harness::{Project, tracker_bin_dir};

const ENV_FILE: &str = "environments/e2e.json";

/// The e2e environment with `database`, listed (a whitelist in the
/// database), persistent completed counts, a backup section and no
/// Prometheus (not needed here).
fn data_environment(vm: &Vm, database: Value) -> Value {
    let mut env = environment(vm, 120);
    env["tracker"]["core"]["database"] = database;
    env["tracker"]["core"]["listed"] = json!(true);
    env["tracker"]["core"]["tracker_policy"] = json!({ "persistent_torrent_completed_stat": true });
    env["backup"] = json!({
        "schedule": "17 3 * * *",
        "keep": 3,
        "path": format!("{}/backups", vm.root),
        "image": "tracker-gitops-e2e/backup:1",
    });
    env.as_object_mut().unwrap().remove("prometheus");
    env
}

/// Another torrent, never whitelisted.
const OTHER: &str = "0123456789abcdef0123456789abcdef01234567";

/// `torrents`, `seeders` and `completed` of the tracker's stats.
fn stats(ctx: &Ctx) -> (u64, u64, u64) {
    let (code, body) = http_get(
        "127.0.0.1:1212",
        &format!("/api/v1/stats?token={}", ctx.token),
    );
    assert_eq!(code, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).unwrap();
    let field = |name: &str| stats[name].as_u64().unwrap();
    (field("torrents"), field("seeders"), field("completed"))
}

/// Whether the tracker's HTTP client gets an announce response (a listed
/// tracker answers a torrent not on its whitelist with a failure, which the
/// client does not take).
fn http_announce(info_hash: &str) -> bool {
    Std::new(tracker_bin_dir().join("http_tracker_client"))
        .args(["announce", "http://127.0.0.1:7070", info_hash])
        .output()
        .unwrap()
        .status
        .success()
}

/// Whether the tracker's UDP client gets an announce response.
fn udp_announce() -> bool {
    Std::new(tracker_bin_dir().join("udp_tracker_client"))
        .args(["announce", "127.0.0.1:6969", INFOHASH])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("AnnounceIpv4")
        })
}

/// Restarts the tracker's container and waits until Docker finds it healthy.
fn restart_tracker() {
    sh(
        "docker",
        &["restart", "--time", "10", &container("tracker")],
    );
    assert_eq!(tracker_health(), "healthy");
}

/// The JSON object a `--format json` run printed.
fn json_of(run: &crate::harness::Run) -> Value {
    let out = run.stdout();
    assert!(out.starts_with("{\n  \"format_version\": 1,"), "{out}");
    serde_json::from_str(&out).unwrap()
}

/// `step=seconds` of each step of a data op's JSON report, and its total.
fn timings(report: &Value) -> String {
    let steps: Vec<String> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}={:.2}s",
                s["step"].as_str().unwrap(),
                s["seconds"].as_f64().unwrap()
            )
        })
        .collect();
    format!(
        "{} (total {:.2}s)",
        steps.join(" "),
        report["total_seconds"].as_f64().unwrap()
    )
}

/// Takes a backup while UDP announces run back to back; returns the backup's
/// report and how many announces there were and failed.
fn backup_under_load(ctx: &Ctx) -> (Value, usize, usize) {
    let done = AtomicBool::new(false);
    let (sent, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let run = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let ok = udp_announce();
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Announces flow before the backup starts and until it has ended.
        std::thread::sleep(Duration::from_millis(300));
        let run = ctx.run(&["backup", "--env", "e2e", "--format", "json"]);
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::Relaxed);
        run
    });
    let run = run.expect(0);
    (json_of(&run), sent.into_inner(), failed.into_inner())
}

/// Steps 1-3 for the deployed database: data that survives a restart, an
/// online backup that verifies, a restore after `drop_data`. The tracker is
/// listed: its whitelist, in the database, decides which torrents it takes.
/// Returns the figures for the closing note.
fn prove(ctx: &Ctx, vm: &Vm, driver: &str, drop_data: impl Fn()) -> String {
    // (1) a torrent whitelisted through the API, announced with the
    // tracker's own clients; after a restart the tracker still takes it
    let (code, body) = http_request(
        "POST",
        "127.0.0.1:1212",
        &format!("/api/v1/whitelist/{INFOHASH}?token={}", ctx.token),
    );
    assert_eq!(code, 200, "{body}");
    assert!(udp_announce(), "{driver}: UDP announce");
    assert!(http_announce(INFOHASH), "{driver}: HTTP announce");
    assert!(!http_announce(OTHER), "{driver}: the tracker is listed");
    restart_tracker();
    assert!(
        http_announce(INFOHASH),
        "{driver}: the whitelist survives a restart"
    );
    assert!(!http_announce(OTHER));
    let before = stats(ctx);
    assert_eq!(before.0, 1, "{driver}: the torrent is there: {before:?}");

    // (2) an online backup while announces keep succeeding; it verifies
    let (report, sent, failed) = backup_under_load(ctx);
    assert_eq!(report["result"], "backed-up", "{report}");
    let backup = &report["backup"];
    assert_eq!(backup["driver"], driver, "{report}");
    assert_eq!(backup["rows"]["whitelist"], 1, "{report}");
    assert_eq!(backup["rows"]["torrents"], 1, "{report}");
    assert!(sent > 0);
    assert_eq!(
        failed, 0,
        "{driver}: {failed} of {sent} announces failed during the backup"
    );
    let name = backup["name"].as_str().unwrap().to_string();
    let list = json_of(
        &ctx.run(&["backup", "--env", "e2e", "--list", "--format", "json"])
            .expect(0),
    );
    assert!(
        list["backups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == name.as_str()),
        "{list}"
    );
    let manifest = std::fs::read_to_string(format!("{}/backups/{name}/manifest", vm.root)).unwrap();
    let deployed = std::fs::read_to_string(format!("{}/deployed", vm.root)).unwrap();
    assert!(
        manifest.contains(&format!("commit {}", deployed.trim())),
        "{manifest}"
    );
    let config = format!("{}/backups/{name}/config", vm.root);
    assert!(std::path::Path::new(&format!("{config}/storage/tracker/etc/tracker.toml")).is_file());
    assert!(std::path::Path::new(&format!("{config}/docker-compose.yml")).is_file());

    // (3) the data dropped, then restored: the tracker takes the torrent
    // again, and the stats are back to the numbers before
    drop_data();
    let started = Instant::now();
    let run = ctx
        .run(&[
            "restore", "--env", "e2e", "--from", &name, "--format", "json",
        ])
        .expect(0);
    let wall = started.elapsed();
    let restore = json_of(&run);
    assert_eq!(restore["result"], "restored", "{restore}");
    assert_eq!(restore["rows"]["whitelist"], 1, "{restore}");
    assert!(
        http_announce(INFOHASH),
        "{driver}: the whitelist is restored"
    );
    assert!(!http_announce(OTHER));
    assert_eq!(stats(ctx), before, "{driver}: restored");
    let audit = std::fs::read_to_string(format!("{}/audit.log", vm.root)).unwrap();
    assert!(
        audit
            .lines()
            .last()
            .unwrap()
            .contains(&format!("result=restored op=restore backup={name}")),
        "{audit}"
    );
    format!(
        "{driver}: backup {} with {failed} of {sent} announces failed; restore {} ({:.2}s wall)",
        timings(&report),
        timings(&restore),
        wall.as_secs_f64()
    )
}

#[test]
#[ignore = "needs .ci/install: docker, sshd, torrust-tracker binaries, mariadb, sqlite3, root"]
fn data_e2e_mysql_then_sqlite_backup_and_restore() {
    let project = e2e_project();
    let vm = Vm::start(project.join("vm"), &project.join("origin.git"));
    project.write(".git/info/exclude", "/origin.git/\n/vm/\n");
    // Characters that change a URL's meaning when not percent-encoded.
    let password = format!("p@ss/w#rd?%25&:{}", random_hex());
    let root_password = format!("r00t'\"{}", random_hex());
    let mut ctx = Ctx::new(&project, &vm);
    ctx.secrets = vec![
        ("MYSQL_PASSWORD", password.clone()),
        ("MYSQL_ROOT_PASSWORD", root_password.clone()),
    ];
    let mut figures = Vec::new();

    // MySQL: the MariaDB image, the tracker connecting with that password
    let mysql = json!({
        "driver": "mysql",
        "database_name": "torrust",
        "user": "torrust",
        "password": { "secret": "MYSQL_PASSWORD" },
        "root_password": { "secret": "MYSQL_ROOT_PASSWORD" },
        "image": "tracker-gitops-e2e/mariadb:10.11",
    });
    project.write(
        ENV_FILE,
        serde_json::to_string_pretty(&data_environment(&vm, mysql)).unwrap(),
    );
    ctx.publish("MySQL with backups", None);
    ctx.deploy().expect(0);
    figures.push(prove(&ctx, &vm, "mysql", || {
        let dropped = Std::new("docker")
            .args(["exec", "-e", "MYSQL_PWD", &container("mysql")])
            .args(["mariadb", "-uroot", "-e", "DROP DATABASE torrust"])
            .env("MYSQL_PWD", &root_password)
            .output()
            .unwrap();
        assert!(dropped.status.success(), "{dropped:?}");
    }));

    // (5) MySQL to SQLite loses the tracker's data: refused without an
    // acknowledgement, the VM untouched; acknowledged, deployed after an
    // automatic, verified backup of the MySQL database
    let mut sqlite = data_environment(&vm, json!({ "driver": "sqlite3" }));
    project.write(ENV_FILE, serde_json::to_string_pretty(&sqlite).unwrap());
    ctx.publish("SQLite with backups", None);
    let before = vm_state(&vm);
    let loss = "database-driver:mysql->sqlite3";
    let run = ctx.deploy().expect(2);
    assert!(
        run.stderr()
            .contains(&format!("DATA LOSS (NOT acknowledged) [{loss}]")),
        "{}",
        run.stderr()
    );
    assert_eq!(vm_state(&vm), before, "the VM was touched");
    sqlite["acknowledge_data_loss"] = json!([loss]);
    project.write(ENV_FILE, serde_json::to_string_pretty(&sqlite).unwrap());
    let acknowledged = ctx.publish("SQLite, the MySQL data left behind acknowledged", None);
    let started = Instant::now();
    let run = ctx.deploy().expect(0);
    let wall = started.elapsed();
    let backed_up = run
        .stderr()
        .lines()
        .find(|l| l.starts_with("backed up ") && l.contains(": mysql database,"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no backup before the loss: {}", run.stderr()));
    assert!(backed_up.ends_with("(verified)"), "{backed_up}");
    let audit = std::fs::read_to_string(format!("{}/audit.log", vm.root)).unwrap();
    let last: Vec<_> = audit.lines().rev().take(2).collect();
    assert!(
        last[0].contains(&format!("commit={acknowledged} result=deployed"))
            && last[1].contains("op=backup"),
        "{audit}"
    );
    figures.push(format!(
        "mysql->sqlite3: refused unacknowledged; acknowledged: {backed_up}, then deployed \
         ({:.2}s wall)",
        wall.as_secs_f64()
    ));
    let database = format!(
        "{}/checkout/storage/tracker/lib/database/sqlite3.db",
        vm.root
    );
    figures.push(prove(&ctx, &vm, "sqlite3", || {
        std::fs::remove_file(&database).unwrap();
    }));

    // Secrets never in what the binary printed, nor in git.
    let history = project.git(&["log", "-p", "--all"]);
    for secret in [&password, &root_password, &ctx.token] {
        assert!(!ctx.printed(secret));
        assert!(!history.contains(secret.as_str()));
    }
    eprintln!("data e2e figures:\n{}", figures.join("\n"));
}

/// A data op that cannot start still prints its one JSON object, and exits 2.
#[test]
fn data_ops_fail_as_one_json_object() {
    let project = Project::with_examples();
    for args in [
        &["backup", "--env", "production", "--format", "json"][..],
        &[
            "backup",
            "--env",
            "production",
            "--list",
            "--format",
            "json",
        ],
        &[
            "restore",
            "--env",
            "production",
            "--from",
            "20250101T031700Z",
            "--format",
            "json",
        ],
    ] {
        let run = project.run(args).expect(2);
        insta::assert_snapshot!("data-op-not-configured", run.stdout());
        assert!(
            run.stderr().contains("is not configured yet"),
            "{}",
            run.stderr()
        );
    }
    let run = project
        .run(&["backup", "--env", "nope", "--format", "json"])
        .expect(2);
    insta::assert_snapshot!("data-op-invalid-environment", run.stdout());
}
