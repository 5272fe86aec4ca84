use std::process::Command;

use crate::harness::Server;
use crate::helpers::{Backend, TestDatabase};
use crate::smtp_server::SmtpServer;

/// Two instances starting together on a fresh database both come up: the
/// migrations run once, under the advisory lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_migrate_a_fresh_database_together() {
    let smtp = SmtpServer::start().await;
    let (_database, url) = TestDatabase::create(Backend::Postgres);
    let a = Server::spawn(&url, smtp.port);
    let b = Server::spawn(&url, smtp.port);
    a.wait_ready().await;
    b.wait_ready().await;
    let status = Command::new(env!("CARGO_BIN_EXE_assent"))
        .arg("migrate")
        .env("ASSENT_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("up to date"));
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
