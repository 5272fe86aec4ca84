use std::process::Command;

use std::time::Duration;

use crate::harness::{Options, Server};
use crate::helpers::{Backend, TestDatabase};
use crate::smtp_server::SmtpServer;

/// Two instances starting together on a fresh database both come up: the
/// migrations run once, under the advisory lock. Exactly one of them
/// applies them (the other, waiting on the lock, then finds nothing to
/// do), each version is recorded once, and neither logs an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_migrate_a_fresh_database_together() {
    let smtp = SmtpServer::start().await;
    let (_database, url) = TestDatabase::create(Backend::Postgres);
    let options = Options {
        env: vec![("ASSENT_LOG__FILTER", "info".to_owned())],
        capture_log: true,
        run_as: None,
    };
    let mut a = Server::spawn_with(&url, smtp.port, &options);
    let mut b = Server::spawn_with(&url, smtp.port, &options);
    a.wait_ready().await;
    b.wait_ready().await;
    let status = Command::new(env!("CARGO_BIN_EXE_assent"))
        .arg("migrate")
        .env("ASSENT_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("up to date"));
    let versions: Vec<String> = {
        use diesel::prelude::*;
        diesel::table! {
            __diesel_schema_migrations (version) {
                version -> Text,
            }
        }
        __diesel_schema_migrations::table
            .select(__diesel_schema_migrations::version)
            .order(__diesel_schema_migrations::version.asc())
            .load(&mut crate::harness::connect(&url))
            .unwrap()
    };
    let known = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter(|entry| entry.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count();
    let mut unique = versions.clone();
    unique.dedup();
    assert_eq!(unique, versions, "a version recorded twice");
    assert_eq!(versions.len(), known, "{versions:?}");
    for server in [&mut a, &mut b] {
        server.send_sigterm();
        assert!(server.wait_exit(Duration::from_secs(30)).await.success());
    }
    let logs = [a.log(), b.log()];
    let applied = logs
        .iter()
        .filter(|log| log.contains("migrations applied"))
        .count();
    assert_eq!(applied, 1, "both or neither applied the migrations");
    for log in &logs {
        assert!(!log.contains(r#""level":"ERROR""#), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
    println!(
        "migrate-together: instances ready 2, applied by 1, versions {} each once, errors 0",
        versions.len()
    );
}

/// A database migrated by a newer Assent is refused with a clear message.
async fn a_newer_database_is_refused(backend: Backend) {
    let (_database, url) = TestDatabase::create(backend);
    let migrate = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_assent"))
            .args(args)
            .env("ASSENT_DATABASE_URL", &url)
            .env("ASSENT_LOG__FILTER", "warn")
            .output()
            .unwrap()
    };
    assert!(migrate(&["migrate"]).status.success());
    {
        use diesel::RunQueryDsl;
        let mut conn = assent::db::DbUrl::parse(&url)
            .unwrap()
            .establish(std::time::Duration::from_secs(5))
            .unwrap();
        diesel::sql_query(
            "INSERT INTO __diesel_schema_migrations (version, run_on) VALUES ('29990101000000', CURRENT_TIMESTAMP)",
        )
        .execute(&mut conn)
        .unwrap();
    }
    for args in [&["migrate"][..], &["serve"][..]] {
        let output = migrate(args);
        assert!(
            !output.status.success(),
            "{args:?} accepted a newer database"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("newer"), "{args:?}: {stderr}");
    }
}

crate::backend_tests!(a_newer_database_is_refused);
