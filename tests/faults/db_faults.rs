use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Server, load, stored_signups, verify_ledger};
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
    let server = Server::start(&url, smtp.port).await;
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
    let stored = stored_signups(&url);
    assert!(report.acknowledged.is_subset(&stored));
    let verified = verify_ledger(&url);
    assert_eq!(verified["ok"], true, "{verified}");
    println!(
        "postgres-restart: sent {} acknowledged {} answered-503 {} unanswered {} stored {} first-503-after {:?}",
        report.sent,
        report.acknowledged.len(),
        report.refused.len(),
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
