//! HTTPS end to end: an environment whose HTTP tracker and REST API are
//! served by Caddy is published and deployed over SSH (as in `deploy.rs`);
//! Caddy gets its certificate from Pebble, Let's Encrypt's ACME test server,
//! which validates the domain for real: it connects to the domain's port 80,
//! which its container resolves to this machine, where Caddy is published.
//! Images from Debian's caddy and pebble packages (tests/e2e/images.sh).
//!
//! Pebble runs in the host's network namespace (Docker's `host` network):
//! its validation then reaches Caddy's published port the way a public CA
//! reaches a VM, and Caddy reaches Pebble's directory on the Docker bridge's
//! gateway address, which Pebble's HTTPS certificate (signed by a root made
//! here, given to Caddy as `https.ca_root`) names.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::deploy::{Ctx, Vm, container, e2e_project, environment, sh};

const DOMAIN: &str = "tracker.e2e.example.com";
const PEBBLE: &str = "tg-e2e-pebble";
const PEBBLE_IMAGE: &str = "tracker-gitops-e2e/pebble:2.4";
const INFOHASH: &str = "%9c%38%42%22%13%e3%0b%ff%21%2b%30%c3%60%d2%6f%9a%02%13%64%22";

/// Pebble's container, removed on drop.
struct Pebble {
    /// Our root, which signed Pebble's own HTTPS certificate.
    api_root: String,
    dir: std::path::PathBuf,
}

impl Pebble {
    /// Starts Pebble with an HTTPS certificate for `gateway` (where Caddy
    /// reaches it) and loopback (where the test reads its roots).
    fn start(dir: std::path::PathBuf, gateway: &str) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut root = vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=tracker-gitops e2e ACME API root",
        ];
        root.extend(ec);
        let (root_key, root_pem) = (path("root.key"), path("root.pem"));
        root.extend(["-keyout", &root_key, "-out", &root_pem]);
        sh("openssl", &root);
        let (key, csr, cert) = (path("key.pem"), path("csr.pem"), path("cert.pem"));
        let mut request = vec![
            "req",
            "-new",
            "-subj",
            "/CN=pebble",
            "-keyout",
            &key,
            "-out",
            &csr,
        ];
        request.extend(ec);
        sh("openssl", &request);
        let san = path("san.ext");
        std::fs::write(&san, format!("subjectAltName=IP:{gateway},IP:127.0.0.1\n")).unwrap();
        sh(
            "openssl",
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                &root_pem,
                "-CAkey",
                &root_key,
                "-CAcreateserial",
                "-extfile",
                &san,
                "-out",
                &cert,
            ],
        );
        let config = json!({ "pebble": {
            "listenAddress": format!("{gateway}:14000"),
            "managementListenAddress": "127.0.0.1:15000",
            "certificate": "/pebble/cert.pem",
            "privateKey": "/pebble/key.pem",
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        // The container's user (root) reads the key; the directory is the test's.
        let _ = Std::new("docker").args(["rm", "-f", PEBBLE]).output();
        sh(
            "docker",
            &[
                "run",
                "-d",
                "--name",
                PEBBLE,
                "--network",
                "host",
                "--add-host",
                &format!("{DOMAIN}:127.0.0.1"),
                "-v",
                &format!("{}:/pebble:ro", dir.display()),
                // No random 0-15 s pause before each validation, no bad nonces.
                "-e",
                "PEBBLE_VA_NOSLEEP=1",
                "-e",
                "PEBBLE_WFE_NONCEREJECT=0",
                PEBBLE_IMAGE,
            ],
        );
        Self {
            api_root: std::fs::read_to_string(&root_pem).unwrap(),
            dir,
        }
    }

    /// Waits for Pebble, then saves the root it signs certificates with (it
    /// makes a new one at start) and returns the file.
    fn issuing_root(&self) -> std::path::PathBuf {
        let out = self.dir.join("issuing-root.pem");
        let api_root = self.dir.join("root.pem");
        let args = [
            "--cacert",
            api_root.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        wait_for("Pebble's management API", Duration::from_secs(20), || {
            curl(&args, "https://127.0.0.1:15000/roots/0").map(drop)
        });
        out
    }

    /// How many certificates Pebble has issued.
    fn issued(&self) -> usize {
        let output = Std::new("docker").args(["logs", PEBBLE]).output().unwrap();
        let log = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        log.matches("Issued certificate serial").count()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = Std::new("docker").args(["rm", "-f", PEBBLE]).output();
    }
}

/// `curl -fsS ARGS URL`: its output, or its error. The URL (which may hold
/// the admin token) goes in on standard input, not on the command line.
fn curl(args: &[&str], url: &str) -> Result<String, String> {
    let mut child = Std::new("curl")
        .args(["-fsS", "-K", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "url = \"{url}\"").unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Polls `ready` until it succeeds; fails with its last error after `limit`.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    while let Err(error) = ready() {
        assert!(
            start.elapsed() < limit,
            "{what}: not ready after {limit:?}: {error}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The certificate Caddy serves for [`DOMAIN`] on the host's port 443: its
/// serial and issuer, as `openssl x509` prints them.
fn served_certificate() -> String {
    let mut client = Std::new("openssl")
        .args([
            "s_client",
            "-connect",
            "127.0.0.1:443",
            "-servername",
            DOMAIN,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(client.stdin.take());
    let chain = client.wait_with_output().unwrap().stdout;
    let mut x509 = Std::new("openssl")
        .args(["x509", "-noout", "-serial", "-issuer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    x509.stdin.take().unwrap().write_all(&chain).unwrap();
    String::from_utf8_lossy(&x509.wait_with_output().unwrap().stdout).into_owned()
}

/// The e2e environment with its HTTP tracker and API behind Caddy.
fn https_environment(vm: &Vm, pebble: &Pebble, gateway: &str, email: &str) -> serde_json::Value {
    let mut env = environment(vm, 120);
    env["tracker"]["http_trackers"][0]["domain"] = json!(DOMAIN);
    env["tracker"]["http_api"]["domain"] = json!(DOMAIN);
    env["https"] = json!({
        "email": email,
        "ca": format!("https://{gateway}:14000/dir"),
        "ca_root": pebble.api_root,
        "image": "tracker-gitops-e2e/caddy:2.6"
    });
    env
}

#[test]
#[ignore = "needs .ci/install: docker, sshd, caddy, pebble, curl, openssl, torrust-tracker binaries, root"]
fn https_e2e_certificate_from_pebble_through_the_deploy_path() {
    let timer = Instant::now();
    let project = e2e_project();
    eprintln!("timing: images {:.1}s", timer.elapsed().as_secs_f64());
    // The default bridge's address on this machine (`docker0`), which every
    // container can reach.
    let docker0 = sh("ip", &["-4", "-o", "addr", "show", "dev", "docker0"]);
    let gateway = docker0
        .split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .expect("docker0 has an IPv4 address")
        .to_string();
    let pebble = Pebble::start(project.join("pebble"), &gateway);
    // Up before Caddy asks (a failed first try waits a minute to retry).
    let root = pebble.issuing_root();
    let vm = Vm::start(project.join("vm"), &project.join("origin.git"));
    project.write(".git/info/exclude", "/origin.git/\n/vm/\n/pebble/\n");
    let ctx = Ctx::new(&project, &vm);
    let env_file = "environments/e2e.json";
    let write_env = |email: &str| {
        let env = https_environment(&vm, &pebble, &gateway, email);
        project.write(env_file, serde_json::to_string_pretty(&env).unwrap());
    };

    // (1) deploy through the real path: publish, then deploy over SSH
    let step = Instant::now();
    write_env("ops@example.org");
    ctx.publish_and_deploy("e2e environment over HTTPS");
    eprintln!(
        "timing: (1) publish + deploy {:.1}s",
        step.elapsed().as_secs_f64()
    );

    // (2) the certificate Caddy serves chains to Pebble's root
    let step = Instant::now();
    // Trusting Pebble's root only, with the domain on this machine.
    let trust = [
        "--cacert",
        root.to_str().unwrap(),
        "--resolve",
        &format!("{DOMAIN}:443:127.0.0.1"),
        "--resolve",
        &format!("{DOMAIN}:80:127.0.0.1"),
    ];
    let stats_url = format!("https://{DOMAIN}/api/v1/stats?token={}", ctx.token);
    wait_for("a certificate from Pebble", Duration::from_secs(60), || {
        curl(&trust, &stats_url).map(drop)
    });
    eprintln!(
        "timing: (2) certificate issued and served {:.1}s",
        step.elapsed().as_secs_f64()
    );
    let first = served_certificate();
    assert!(
        first.contains("Pebble"),
        "issued by Pebble, not Caddy's own CA: {first}"
    );
    assert_eq!(pebble.issued(), 1);

    // (3) announce and read the stats over HTTPS; the plain ports are closed
    let step = Instant::now();
    let announce = format!(
        "https://{DOMAIN}/announce?info_hash={INFOHASH}&peer_id=-TG0001-000000000001&port=51413\
         &uploaded=0&downloaded=0&left=0&event=started&compact=1"
    );
    let body = curl(&trust, &announce).unwrap();
    assert!(
        body.contains("8:intervali120e"),
        "a bencoded announce response: {body}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&curl(&trust, &stats_url).unwrap()).unwrap();
    // Counted as a TCP/IPv4 announce: the tracker took the client's address
    // from Caddy's X-Forwarded-For (with `on_reverse_proxy` it refuses a
    // request without one).
    assert_eq!(stats["tcp4_announces_handled"], 1, "{stats}");
    for port in [1212, 7070] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "plain port {port} is published"
        );
    }
    let mut args = trust.to_vec();
    args.extend(["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"]);
    let redirect = curl(&args, &format!("http://{DOMAIN}/announce")).unwrap();
    assert_eq!(redirect, format!("308 https://{DOMAIN}/announce"));
    eprintln!(
        "timing: (3) announce, stats, closed ports, redirect {:.1}s",
        step.elapsed().as_secs_f64()
    );

    // (4) only a Caddy setting changes: Caddy alone is recreated, and it
    // serves the certificate it kept in its volume
    let step = Instant::now();
    let tracker_before = container("tracker");
    let caddy_before = container("caddy");
    write_env("security@example.org");
    ctx.publish_and_deploy("another ACME contact");
    assert_eq!(
        container("tracker"),
        tracker_before,
        "the tracker was recreated"
    );
    assert_ne!(
        container("caddy"),
        caddy_before,
        "Caddy runs the new Caddyfile"
    );
    wait_for("Caddy serving again", Duration::from_secs(30), || {
        curl(&trust, &stats_url).map(drop)
    });
    assert_eq!(
        served_certificate(),
        first,
        "the same certificate, not a new one"
    );
    assert_eq!(pebble.issued(), 1, "no second certificate from Pebble");
    eprintln!(
        "timing: (4) Caddy-only redeploy {:.1}s",
        step.elapsed().as_secs_f64()
    );

    assert!(!ctx.printed(&ctx.token), "the admin token was printed");
    let caddyfile = project.read("build/e2e/storage/caddy/etc/Caddyfile");
    assert!(!caddyfile.contains(&ctx.token));
    assert!(Path::new(&vm.root).join("checkout").exists());
}
