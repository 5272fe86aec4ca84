use reqwest::Method;

use sha2::{Digest, Sha256};

use crate::helpers::{Backend, CURRENT_TEXT, spawn_app, spawn_app_with};

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

/// The app's clock as RFC 3339, for `since`.
fn rfc3339(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn ndjson(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn the_events_export_filters_by_since(backend: Backend) {
    use assent::clock::Clock;
    let app = spawn_app(backend).await;
    let key = app.admin_key("auditor");
    app.sign_up("old@example.org", "newsletter").await;
    app.clock.advance(chrono::Duration::days(2));
    let cut = app.clock.now() - chrono::Duration::days(1);
    app.sign_up("new@example.org", "newsletter").await;
    app.dispatch_all_pending_emails().await;
    let all = ndjson(
        &app.admin_text("/admin/exports/events?format=ndjson", &key)
            .await,
    );
    assert_eq!(all.len(), 4);
    let since = ndjson(
        &app.admin_text(
            &format!("/admin/exports/events?format=ndjson&since={}", rfc3339(cut)),
            &key,
        )
        .await,
    );
    // The old address's request is before the cut; its confirmation email
    // went out after it, with the new address's.
    let kinds: Vec<_> = since.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "consent_requested",
            "confirmation_sent",
            "confirmation_sent"
        ],
        "{since:?}"
    );
    let old_request = all
        .iter()
        .find(|e| e["kind"] == "consent_requested")
        .unwrap();
    assert!(since.iter().all(|e| e["id"] != old_request["id"]));
    assert!(
        since
            .iter()
            .all(|e| e["occurred_at"].as_str().unwrap() >= rfc3339(cut).as_str())
    );
    let later = app
        .admin_text(
            &format!(
                "/admin/exports/events?format=ndjson&since={}",
                rfc3339(app.clock.now() + chrono::Duration::seconds(1))
            ),
            &key,
        )
        .await;
    assert!(later.is_empty());
    let bad = app
        .admin(Method::GET, "/admin/exports/events?since=yesterday", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
}

async fn iso27560_records_name_controller_retention_withdrawal_and_language(backend: Backend) {
    let app = spawn_app_with(backend, crate::helpers::SETTINGS_LISTS).await;
    let key = app.admin_key("dpo");
    app.confirmed_subscriber("pia@example.org", "records").await;
    let leaving = app.confirmed_subscriber("rob@example.org", "records").await;
    app.one_click(&leaving).await;
    let records = ndjson(
        &app.admin_text("/admin/exports/consent?format=iso27560&list=records", &key)
            .await,
    );
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(
            record["controller"],
            serde_json::json!({
                "name": "Praxis Dr. Beispiel",
                "address": "Hauptstr. 1, 10115 Berlin",
                "contact": "datenschutz@clinic.example",
            })
        );
        assert_eq!(record["retention"], "Zwei Jahre nach dem Widerruf");
        // The language of the consent text agreed to: the list's.
        assert_eq!(record["language"], "de");
        assert_eq!(
            record["notice"]["consent_text_sha256"],
            hex::encode(Sha256::digest(
                "Ich willige ein, den Praxisbrief per E-Mail zu erhalten.".as_bytes()
            ))
        );
    }
    let by_state = |state: &str| {
        records
            .iter()
            .find(|r| r["event_state"] == state)
            .unwrap_or_else(|| panic!("no {state} record in {records:?}"))
    };
    // Still subscribed: how consent can be withdrawn.
    let given = by_state("given");
    assert!(
        given["withdrawal_method"]
            .as_str()
            .unwrap()
            .contains("one-click unsubscribe"),
        "{given}"
    );
    // Left: how it was withdrawn.
    let withdrawn = by_state("withdrawn");
    assert_eq!(withdrawn["withdrawal_method"], "one_click");
    assert_eq!(withdrawn["event_type"], "withdrawn");
    // A list without them states no controller and the default retention.
    app.confirmed_subscriber("pia@example.org", "newsletter")
        .await;
    let plain = ndjson(
        &app.admin_text(
            "/admin/exports/consent?format=iso27560&list=newsletter",
            &key,
        )
        .await,
    );
    assert_eq!(plain[0]["controller"]["name"], serde_json::Value::Null);
    assert_eq!(plain[0]["language"], "en");
    assert!(
        plain[0]["retention"]
            .as_str()
            .unwrap()
            .starts_with("Until consent is withdrawn")
    );
}

async fn the_command_line_exports_ndjson_by_list_and_since(backend: Backend) {
    use assent::clock::Clock;
    let app = spawn_app(backend).await;
    app.sign_up("ada@example.org", "newsletter").await;
    app.sign_up("ben@example.org", "offers").await;
    app.clock.advance(chrono::Duration::days(2));
    let cut = app.clock.now() - chrono::Duration::days(1);
    app.sign_up("cal@example.org", "newsletter").await;
    app.sign_up("dee@example.org", "offers").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let export = |args: &[&str], out: &std::path::Path| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_assent"))
            .args(["export", "consent", "--format", "ndjson", "--out"])
            .arg(out)
            .args(args)
            .env("ASSENT_DATABASE_URL", &app.database_url)
            .env("ASSENT_LOG__FILTER", "warn")
            .env("ASSENT_CONFIG", &config)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        ndjson(&std::fs::read_to_string(out).unwrap())
    };
    let emails = |records: &[serde_json::Value]| {
        let mut emails: Vec<String> = records
            .iter()
            .map(|r| r["email"].as_str().unwrap().to_owned())
            .collect();
        emails.sort();
        emails
    };
    let all = export(&[], &dir.path().join("all.ndjson"));
    assert_eq!(
        emails(&all),
        [
            "ada@example.org",
            "ben@example.org",
            "cal@example.org",
            "dee@example.org"
        ]
    );
    let newsletter = export(&["--list", "newsletter"], &dir.path().join("list.ndjson"));
    assert_eq!(emails(&newsletter), ["ada@example.org", "cal@example.org"]);
    assert!(newsletter.iter().all(|r| r["list"] == "newsletter"));
    let since = rfc3339(cut);
    let recent = export(&["--since", &since], &dir.path().join("since.ndjson"));
    assert_eq!(emails(&recent), ["cal@example.org", "dee@example.org"]);
    let both = export(
        &["--list", "newsletter", "--since", &since],
        &dir.path().join("both.ndjson"),
    );
    assert_eq!(emails(&both), ["cal@example.org"]);
    // The same records as the HTTP export with the same filters.
    let key = app.admin_key("auditor");
    let http = ndjson(
        &app.admin_text(
            &format!("/admin/exports/consent?format=ndjson&list=newsletter&since={since}"),
            &key,
        )
        .await,
    );
    assert_eq!(both, http);
    // A list that does not exist is refused.
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_assent"))
        .args([
            "export", "consent", "--format", "ndjson", "--list", "nope", "--out",
        ])
        .arg(dir.path().join("nope.ndjson"))
        .env("ASSENT_DATABASE_URL", &app.database_url)
        .env("ASSENT_LOG__FILTER", "warn")
        .env("ASSENT_CONFIG", &config)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nope"));
    assert!(!dir.path().join("nope.ndjson").exists());
}

crate::backend_tests!(
    consent_export_holds_both_steps_with_the_exact_text_hash,
    erasure_keeps_the_ledger_verifiable_and_the_address_out,
    the_command_line_export_matches_the_http_one,
    the_events_export_filters_by_since,
    iso27560_records_name_controller_retention_withdrawal_and_language,
    the_command_line_exports_ndjson_by_list_and_since,
);
