use reqwest::Method;

use sha2::{Digest, Sha256};

use crate::helpers::{Backend, CURRENT_TEXT, spawn_app};

fn csv_rows(body: &str) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body.as_bytes());
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

fn column(rows: &[Vec<String>], name: &str) -> usize {
    rows[0]
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

async fn consent_export_holds_both_steps_with_the_exact_text_hash(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.admin_key("auditor");
    let version = {
        let list = app.admin_json("/admin/lists/newsletter", &key).await;
        list["current_consent_version_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    app.client
        .post(app.url("/subscriptions"))
        .header("User-Agent", "=cmd|' /C calc'!A0")
        .header("Referer", "https://clinic.example/footer")
        .form(&[
            ("email", "ivy@example.org"),
            ("consent", "on"),
            ("consent_version", version.as_str()),
            ("name", "=HYPERLINK(\"http://x\")"),
        ])
        .send()
        .await
        .unwrap();
    app.dispatch_all_pending_emails().await;
    let link = app.local(&app.confirmation_links("ivy@example.org")[0]);
    app.client
        .post(&link)
        .header("User-Agent", "Confirming Browser")
        .send()
        .await
        .unwrap();
    app.sign_up("jay@example.org", "offers").await;

    let response = app
        .admin(Method::GET, "/admin/exports/consent?format=csv", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("\r\n"), "RFC 4180 line ends");
    let rows = csv_rows(&body);
    assert_eq!(rows.len(), 3);
    let ivy = rows
        .iter()
        .find(|r| r.iter().any(|c| c == "ivy@example.org"))
        .unwrap();
    let get = |name: &str| ivy[column(&rows, name)].clone();
    assert_eq!(
        get("consent_sha256"),
        hex::encode(Sha256::digest(CURRENT_TEXT.as_bytes()))
    );
    assert_eq!(get("consent_version_id"), version);
    assert_eq!(get("consent_language"), "en");
    assert_eq!(get("state"), "confirmed");
    assert_eq!(get("requested_ip"), "127.0.0.1");
    assert_eq!(get("requested_source_url"), "https://clinic.example/footer");
    assert_eq!(get("confirmed_ip"), "127.0.0.1");
    assert_eq!(get("confirmed_user_agent"), "Confirming Browser");
    assert!(get("confirmation_message_id").ends_with("@clinic.example>"));
    assert!(!get("confirmation_sent_at").is_empty());
    assert!(!get("token_expires_at").is_empty());
    // Spreadsheet formulas are neutralised.
    assert_eq!(get("name"), "'=HYPERLINK(\"http://x\")");
    assert_eq!(get("requested_user_agent"), "'=cmd|' /C calc'!A0");
    assert!(!body.contains("\n=") && !body.contains(",=") && !body.contains(",\"="));

    let texts = app.admin_json("/admin/exports/consent-texts", &key).await;
    assert!(
        texts["consent_texts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["text"] == CURRENT_TEXT && t["sha256"] == get("consent_sha256").as_str())
    );

    let ndjson = app
        .admin_text("/admin/exports/consent?format=ndjson&list=newsletter", &key)
        .await;
    let records: Vec<serde_json::Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["email"], "ivy@example.org");
    assert_eq!(records[0]["erased"], false);
    assert_eq!(records[0]["name"], "=HYPERLINK(\"http://x\")");

    let iso = app
        .admin_text(
            "/admin/exports/consent?format=iso27560&list=newsletter",
            &key,
        )
        .await;
    let record: serde_json::Value = serde_json::from_str(iso.lines().next().unwrap()).unwrap();
    assert_eq!(record["event_state"], "given");
    assert_eq!(
        record["notice"]["consent_text_sha256"],
        get("consent_sha256").as_str()
    );
    assert!(record["schema_version"].as_str().unwrap().contains("27560"));
    assert!(
        record["purposes"][0]["lawful_basis"]
            .as_str()
            .unwrap()
            .contains("consent")
    );

    let events = app
        .admin_text("/admin/exports/events?format=ndjson", &key)
        .await;
    let events: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 4);
    assert!(
        events
            .iter()
            .all(|e| e["hash"].as_str().unwrap().len() == 64)
    );

    // Periods select by activity.
    let future = app
        .admin_text(
            "/admin/exports/consent?format=ndjson&since=2999-01-01T00:00:00Z",
            &key,
        )
        .await;
    assert!(future.is_empty());
    let all = app.admin_text("/admin/exports/consent?format=ndjson&since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z", &key).await;
    assert_eq!(all.lines().count(), 2);
    for bad in ["format=xml", "since=yesterday", "list=nope"] {
        let response = app
            .admin(Method::GET, &format!("/admin/exports/consent?{bad}"), &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{bad}");
    }
}

async fn erasure_keeps_the_ledger_verifiable_and_the_address_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.admin_key("auditor");
    app.confirmed_subscriber("kai@example.org", "newsletter")
        .await;
    app.confirmed_subscriber("lou@example.org", "newsletter")
        .await;
    let erased = app
        .admin(Method::DELETE, "/admin/subjects/kai@example.org", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    let body = app
        .admin_text("/admin/exports/consent?format=ndjson", &key)
        .await;
    assert!(!body.contains("kai@example.org"));
    let records: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kai = records.iter().find(|r| r["erased"] == true).unwrap();
    assert_eq!(kai["email"], serde_json::Value::Null);
    assert_eq!(kai["email_hmac"].as_str().unwrap().len(), 64);
    assert_eq!(kai["state"], "withdrawn");
    assert_eq!(kai["ended_method"], "admin");
    assert_eq!(kai["requested_ip"], serde_json::Value::Null);
    assert_eq!(kai["consent_sha256"].as_str().unwrap().len(), 64);
    let csv = app
        .admin_text("/admin/exports/consent?format=csv", &key)
        .await;
    assert!(!csv.contains("kai@example.org"));
    assert!(csv.contains(kai["email_hmac"].as_str().unwrap()));
    let report = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(report["ok"], true, "{report}");
}

async fn the_command_line_export_matches_the_http_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.admin_key("auditor");
    app.confirmed_subscriber("max@example.org", "newsletter")
        .await;
    app.sign_up("nia@example.org", "offers").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("consent.csv");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_assent"))
        .args([
            "export",
            "consent",
            "--format",
            "csv",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("ASSENT_DATABASE_URL", &app.database_url)
        .env("ASSENT_LOG__FILTER", "warn")
        .env("ASSENT_CONFIG", write_config(dir.path()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let from_cli = std::fs::read_to_string(&out).unwrap();
    let from_http = app
        .admin_text("/admin/exports/consent?format=csv", &key)
        .await;
    assert_eq!(from_cli, from_http);
    assert_eq!(csv_rows(&from_cli).len(), 3);
}

/// The test lists as a config file, so the command line sees the same lists.
fn write_config(dir: &std::path::Path) -> String {
    let path = dir.join("assent.toml");
    std::fs::write(&path, crate::helpers::TEST_LISTS).unwrap();
    path.to_str().unwrap().to_owned()
}

crate::backend_tests!(
    consent_export_holds_both_steps_with_the_exact_text_hash,
    erasure_keeps_the_ledger_verifiable_and_the_address_out,
    the_command_line_export_matches_the_http_one,
);
