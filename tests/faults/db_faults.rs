use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{
    Options, Server, assert_whole_or_absent, load, stored_signups, verify_ledger, wait_for_count,
};
use crate::helpers::find_text_anywhere_in;
use crate::smtp_server::SmtpServer;

/// Where PostgreSQL's programs are (`pg_config --bindir`).
fn pg_bin() -> String {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A PostgreSQL cluster of the test's own, on its own port, so that
/// restarting it disturbs no other test.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(command: &str) -> std::process::Output {
    // PostgreSQL refuses to run as root.
    let output = if unsafe { libc::geteuid() } == 0 {
        Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c", command])
            .output()
    } else {
        Command::new("sh").args(["-c", command]).output()
    };
    output.expect("run a PostgreSQL command")
}

impl Cluster {
    fn create() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("assent-pg-")
            .tempdir()
            .unwrap();
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new("chown")
                .args(["-R", "postgres", dir.path().to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("data");
        let pg_bin = pg_bin();
        let init = as_postgres(&format!(
            "{pg_bin}/initdb -D {} -A trust -U postgres",
            data.display()
        ));
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let cluster = Cluster { dir, port };
        cluster.start();
        let created = as_postgres(&format!(
            "{pg_bin}/createdb -h 127.0.0.1 -p {} -U postgres assent",
            cluster.port
        ));
        assert!(
            created.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        cluster
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/assent", self.port)
    }

    fn pg_ctl(&self, action: &str) {
        let pg_bin = pg_bin();
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let output = as_postgres(&format!(
            "{pg_bin}/pg_ctl -D {} -l {} -w -m fast -o '-p {} -k {} -c listen_addresses=127.0.0.1' {action}",
            data.display(),
            log.display(),
            self.port,
            self.dir.path().display()
        ));
        assert!(
            output.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start(&self) {
        self.pg_ctl("start");
    }

    fn stop(&self) {
        self.pg_ctl("stop");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pg_bin = pg_bin();
        let data = self.dir.path().join("data");
        let _ = as_postgres(&format!(
            "{pg_bin}/pg_ctl -D {} -m immediate stop",
            data.display()
        ));
    }
}

/// PostgreSQL restarted under load: requests during the outage get 503
/// problem+json within the pool timeout, the service recovers by itself,
/// and nothing half-written is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: its own PostgreSQL cluster, restarted under load; CI runs it"]
async fn postgres_restart_gives_503_then_recovers() {
    let cluster = Cluster::create();
    let smtp = SmtpServer::start().await;
    let url = cluster.url();
    let mut server = Server::start(&url, smtp.port).await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(
        vec![server.port],
        4,
        "restart",
        stop.clone(),
        Duration::from_secs(30),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.stop();
    let stopped_at = Instant::now();
    // During the outage: a clear 503, quickly.
    let client = reqwest::Client::new();
    let asked = Instant::now();
    let response = client
        .post(server.url("/subscriptions"))
        .json(&serde_json::json!({ "email": "outage@example.org", "consent": true }))
        .send()
        .await
        .unwrap();
    let waited = asked.elapsed();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("retry-after"));
    assert!(waited < Duration::from_secs(6), "waited {waited:?}");
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarting_at = Instant::now();
    cluster.start();
    // Recovered without a restart of assent.
    let mut recovered = false;
    for _ in 0..100 {
        let response = client
            .post(server.url("/subscriptions"))
            .json(&serde_json::json!({ "email": "after@example.org", "consent": true }))
            .send()
            .await
            .unwrap();
        if response.status() == 202 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "no 202 after PostgreSQL came back");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let report = running.await.unwrap();
    assert!(
        report.refused.iter().all(|s| *s == 503),
        "{:?}",
        report.refused
    );
    // Stopped, so that the checks below see one state (ledger verification
    // is not a snapshot of a database being written to).
    server.send_sigterm();
    server.wait_exit(Duration::from_secs(30)).await;
    let stored = stored_signups(&url);
    assert!(report.acknowledged.is_subset(&stored));
    // Sign-ups sent while the database was down and answered 503 left no
    // row at all: no subscriber, so no event, token or outbox row either
    // (a request that was in flight when the cluster stopped may have
    // committed before its answer was lost, so only those sent after the
    // stop count), and the probe's address is in no column of any table.
    let during: BTreeSet<String> = report
        .refused_requests
        .iter()
        .filter(|(sent_at, _, status)| {
            *status == 503 && *sent_at > stopped_at && *sent_at < restarting_at
        })
        .map(|(_, email, _)| email.clone())
        .chain(["outage@example.org".to_owned()])
        .collect();
    assert_whole_or_absent(&url, &report.acknowledged, &during);
    let found = find_text_anywhere_in(&url, "outage@example.org");
    assert!(found.is_empty(), "the 503 sign-up left {found:?}");
    let verified = verify_ledger(&url);
    assert_eq!(verified["ok"], true, "{verified}");
    println!(
        "postgres-restart: sent {} acknowledged {} answered-503 {} (sent during the outage {}, none stored) unanswered {} stored {} first-503-after {:?}",
        report.sent,
        report.acknowledged.len(),
        report.refused.len(),
        during.len(),
        report.unanswered,
        stored.len(),
        waited
    );
}

/// A SQLite file on a full disk: a clear 503 and nothing half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: mounts a tiny tmpfs; CI runs it"]
async fn sqlite_on_a_full_disk_gives_503() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("disk");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            mount.to_str().unwrap(),
        ])
        .status()
        .expect("mount");
    assert!(
        mounted.success(),
        "this test needs to mount a tmpfs (run as root)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let url = format!("sqlite://{}", mount.join("assent.db").display());
    let smtp = SmtpServer::start().await;
    let server = Server::start(&url, smtp.port).await;
    let stop = Arc::new(AtomicBool::new(false));
    let report = load(vec![server.port], 4, "full", stop, Duration::from_secs(10)).await;
    // Load until the disk is full (each sign-up writes a few KiB).
    assert!(
        report.refused.contains(&503),
        "the disk never filled: {:?}",
        report.refused.len()
    );
    assert!(
        report.refused.iter().all(|s| *s == 503),
        "{:?}",
        report.refused
    );
    drop(server);
    let stored = stored_signups(&url);
    assert!(report.acknowledged.is_subset(&stored));
    let verified = verify_ledger(&url);
    assert_eq!(verified["ok"], true, "{verified}");
    println!(
        "sqlite-full-disk: sent {} acknowledged {} answered-503 {} stored {}",
        report.sent,
        report.acknowledged.len(),
        report.refused.len(),
        stored.len()
    );
}

/// Sets the permission bits of a path.
fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Makes the database files (and their directory) read-only, or writable
/// again.
fn set_read_only(dir: &std::path::Path, read_only: bool) {
    for entry in std::fs::read_dir(dir).unwrap() {
        chmod(
            &entry.unwrap().path(),
            if read_only { 0o444 } else { 0o644 },
        );
    }
    chmod(dir, if read_only { 0o555 } else { 0o755 });
}

/// One sign-up: its status and content type.
async fn sign_up(client: &reqwest::Client, server: &Server, email: &str) -> (u16, String) {
    let response = client
        .post(server.url("/subscriptions"))
        .json(&serde_json::json!({ "email": email, "consent": true }))
        .send()
        .await
        .unwrap();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (response.status().as_u16(), content_type)
}

/// The SQLite database files become read-only under the running service:
/// every sign-up answers 503 problem+json, the log says why (and holds no
/// address), nothing is half-written, and once the files are writable
/// again the same process serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: runs the binary as another user and loads it; CI runs it"]
async fn sqlite_read_only_gives_503_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let data = dir.path().join("db");
    std::fs::create_dir(&data).unwrap();
    let mut options = Options {
        env: vec![
            // Sign-ups are logged at debug (the hot path): shown here, so
            // the test can check they are masked.
            (
                "ASSENT_LOG__FILTER",
                "info,assent::routes::subscribe=debug".to_owned(),
            ),
            ("ASSENT_DATABASE__CONNECTION_TIMEOUT_MS", "1000".to_owned()),
        ],
        capture_log: true,
        run_as: None,
    };
    // Permission bits do not bind root: run the service as `nobody`, from
    // a copy of the binary that user can execute.
    if unsafe { libc::geteuid() } == 0 {
        let binary = dir.path().join("assent");
        std::fs::copy(env!("CARGO_BIN_EXE_assent"), &binary).unwrap();
        chmod(&binary, 0o755);
        let status = Command::new("chown")
            .args(["65534:65534", data.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        options.run_as = Some((65534, 65534, binary));
    }
    let url = format!("sqlite://{}", data.join("assent.db").display());
    let smtp = SmtpServer::start().await;
    let mut server = Server::start_with(&url, smtp.port, &options).await;
    let stop = Arc::new(AtomicBool::new(false));
    let before = load(
        vec![server.port],
        4,
        "writable",
        stop,
        Duration::from_secs(2),
    )
    .await;
    assert!(before.refused.is_empty(), "{:?}", before.refused);
    assert!(!before.acknowledged.is_empty());

    set_read_only(&data, true);
    let client = reqwest::Client::new();
    let mut refused = BTreeSet::new();
    for i in 0..8 {
        let email = format!("readonly{i}@example.org");
        let (status, content_type) = sign_up(&client, &server, &email).await;
        assert_eq!(status, 503, "{email}");
        assert_eq!(content_type, "application/problem+json");
        refused.insert(email);
    }
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    set_read_only(&data, false);
    let recovered_at = Instant::now();
    let mut recovered = false;
    for i in 0..50 {
        if sign_up(&client, &server, &format!("back{i}@example.org"))
            .await
            .0
            == 202
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "no 202 after the files were writable again");
    let recovery = recovered_at.elapsed();
    let stop = Arc::new(AtomicBool::new(false));
    let after = load(vec![server.port], 4, "again", stop, Duration::from_secs(1)).await;
    assert!(after.refused.is_empty(), "{:?}", after.refused);
    let delivered = before.acknowledged.len() + after.acknowledged.len();
    // One more: the first sign-up after the recovery.
    wait_for_count(
        "the confirmation emails",
        Duration::from_secs(30),
        delivered + 1,
        || smtp.received().len(),
    )
    .await;
    server.send_sigterm();
    server.wait_exit(Duration::from_secs(30)).await;

    let log = server.log();
    assert!(
        log.contains("the SQLite database is read-only"),
        "the log does not say the database is read-only"
    );
    let lines = log.lines().filter(|l| l.contains("read-only")).count();
    let acknowledged: BTreeSet<String> = before
        .acknowledged
        .union(&after.acknowledged)
        .cloned()
        .collect();
    for email in acknowledged.iter().chain(&refused) {
        assert!(!log.contains(email.as_str()), "the log holds {email}");
    }
    assert!(log.contains("***@"), "sign-ups are logged masked");
    assert_whole_or_absent(&url, &acknowledged, &refused);
    let verified = verify_ledger(&url);
    assert_eq!(verified["ok"], true, "{verified}");
    println!(
        "sqlite-read-only: acknowledged before {} while read-only answered-503 {} stored 0 \
         recovered after {:?} acknowledged after {} log lines naming the cause {lines}",
        before.acknowledged.len(),
        refused.len(),
        recovery,
        after.acknowledged.len()
    );
}
