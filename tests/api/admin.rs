use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, CURRENT_TEXT, spawn_app};

async fn every_admin_route_needs_an_active_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let revoked = app.admin_key("old");
    {
        let mut conn = app.db();
        assent::db::repo::api_keys::revoke(&mut conn, "old", chrono::Utc::now().naive_utc())
            .unwrap();
    }
    // The table `configure` registers the admin routes from, plus a path
    // that no route matches.
    let mut requests: Vec<(Method, String)> = assent::routes::admin::ROUTES
        .iter()
        .map(|route| {
            let method: Method = route.method.as_str().parse().unwrap();
            (method, route.sample_path())
        })
        .collect();
    assert!(requests.len() > 10);
    requests.push((Method::GET, "/admin/no-such-route".to_owned()));
    for (method, path) in &requests {
        let method = method.clone();
        let none = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without a key");
        assert_eq!(none.headers()["content-type"], "application/problem+json");
        assert!(none.headers().contains_key("www-authenticate"));
        let with_revoked = app
            .admin(method.clone(), path, &revoked)
            .send()
            .await
            .unwrap();
        assert_eq!(
            with_revoked.status(),
            401,
            "{method} {path} with a revoked key"
        );
        let garbage = app
            .admin(method.clone(), path, "ak_not-a-key")
            .send()
            .await
            .unwrap();
        assert_eq!(
            garbage.status(),
            401,
            "{method} {path} with a malformed key"
        );
    }
    let key = app.admin_key("ops");
    let lists = app.admin_json("/admin/lists", &key).await;
    assert_eq!(lists["lists"].as_array().unwrap().len(), 2);
    let unknown = app
        .admin(Method::GET, "/admin/no-such-route", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

async fn keys_created_on_the_command_line_work(backend: Backend) {
    let app = spawn_app(backend).await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(["keys", "create", "--name", "cli"])
        .env("ASSENT_DATABASE_URL", &app.database_url)
        .env("ASSENT_LOG__FILTER", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("ak_"));
    assert_eq!(
        app.admin(Method::GET, "/admin/lists", &key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(["keys", "list"])
        .env("ASSENT_DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("cli") && !listed.contains(&key));
    let revoke = std::process::Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(["keys", "revoke", "cli"])
        .env("ASSENT_DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    assert!(revoke.status.success());
    assert_eq!(
        app.admin(Method::GET, "/admin/lists", &key)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

async fn lists_and_consent_versions(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.admin_key("ops");
    let list = app.admin_json("/admin/lists/newsletter", &key).await;
    let versions = list["consent_versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions.iter().any(|v| v["text"] == CURRENT_TEXT));
    let response = app
        .admin(
            Method::POST,
            "/admin/lists/newsletter/consent-versions",
            &key,
        )
        .json(&json!({ "text": "A text registered by an operator." }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let version: serde_json::Value = response.json().await.unwrap();
    assert_eq!(version["sha256"].as_str().unwrap().len(), 64);
    let signup = app
        .post_json(&json!({ "email": "vi@example.org", "consent": true, "consent_version": version["id"] }))
        .await;
    assert_eq!(signup.status(), 202);
    assert_eq!(
        app.events_for("vi@example.org")[0]
            .consent_sha256
            .as_deref(),
        version["sha256"].as_str()
    );
    let bad = app
        .admin(
            Method::POST,
            "/admin/lists/newsletter/consent-versions",
            &key,
        )
        .json(&json!({ "text": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let malformed = app
        .admin(
            Method::POST,
            "/admin/lists/newsletter/consent-versions",
            &key,
        )
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.headers()["content-type"],
        "application/problem+json"
    );
}

async fn audience_streams_confirmed_subscribers_with_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.admin_key("sender");
    let wes = app
        .confirmed_subscriber("wes@example.org", "newsletter")
        .await;
    app.confirmed_subscriber("xia@example.org", "newsletter")
        .await;
    app.sign_up("pending@example.org", "newsletter").await;
    let body = app
        .admin_text("/admin/lists/newsletter/audience", &key)
        .await;
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let wes_line = lines
        .iter()
        .find(|l| l["email"] == "wes@example.org")
        .unwrap();
    assert_eq!(
        wes_line["list_unsubscribe_post"],
        "List-Unsubscribe=One-Click"
    );
    let url = wes_line["unsubscribe_url"].as_str().unwrap();
    assert_eq!(wes_line["list_unsubscribe"], format!("<{url}>"));
    assert!(wes_line["confirmed_at"].as_str().unwrap().ends_with('Z'));
    // Unsubscribing takes effect at once.
    app.one_click(&wes).await;
    let body = app
        .admin_text("/admin/lists/newsletter/audience", &key)
        .await;
    assert_eq!(body.lines().count(), 1);
    assert!(!body.contains("wes@example.org"));
}

async fn subject_lookup_export_and_erasure(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.admin_key("dpo");
    app.confirmed_subscriber("yan@example.org", "newsletter")
        .await;
    let lookup = app
        .admin_json("/admin/subscribers?email=YAN@example.org", &key)
        .await;
    assert_eq!(lookup["subscriptions"][0]["state"], "confirmed");
    let kinds: Vec<_> = lookup["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "consent_requested",
            "confirmation_sent",
            "consent_confirmed"
        ]
    );
    let export = app
        .admin_json("/admin/subjects/yan@example.org/export", &key)
        .await;
    assert_eq!(export["profile"]["email"], "yan@example.org");
    assert_eq!(export["consent_texts"][0]["text"], CURRENT_TEXT);
    assert_eq!(export["evidence"].as_array().unwrap().len(), 2);
    let events = export["events"].as_array().unwrap();
    assert_eq!(
        events.last().unwrap()["hash"],
        export["proof"]["chain_head"]
    );
    let missing = app
        .admin(
            Method::GET,
            "/admin/subscribers?email=nobody@example.org",
            &key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let erased = app
        .admin(Method::DELETE, "/admin/subjects/yan@example.org", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    assert_eq!(
        erased.json::<serde_json::Value>().await.unwrap()["withdrawn_subscriptions"],
        1
    );
    assert_eq!(
        app.find_text_anywhere("yan@example.org"),
        Vec::<String>::new()
    );
    let again = app
        .admin(Method::DELETE, "/admin/subjects/yan@example.org", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let verify = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(verify["ok"], true);
}

async fn dead_letters_are_listed_and_retried(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.admin_key("ops");
    let refusal =
        crate::smtp_server::Behaviour::Reply("550 5.1.1 <zoe@example.org> no such user".to_owned());
    app.smtp.script([refusal.clone(), refusal.clone(), refusal]);
    app.sign_up("zoe@example.org", "newsletter").await;
    for _ in 0..3 {
        app.dispatch_all_pending_emails().await;
        app.clock.advance(chrono::Duration::hours(2));
    }
    let dead = app.admin_json("/admin/outbox?state=dead", &key).await;
    let rows = dead["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let error = rows[0]["last_error"].as_str().unwrap();
    assert!(error.contains("550"));
    // The relay quoted the address: it is masked before it is stored.
    assert!(!error.contains("zoe@example.org"), "{error}");
    let id = rows[0]["id"].as_str().unwrap();
    // A dead confirmation email keeps no token in clear.
    let payloads: Vec<String> = {
        use assent::db::schema::outbox;
        use diesel::prelude::*;
        outbox::table
            .filter(outbox::id.eq(id))
            .select(outbox::payload)
            .load(&mut app.db())
            .unwrap()
    };
    assert_eq!(payloads, ["{}"]);
    let retried = app
        .admin(Method::POST, &format!("/admin/outbox/{id}/retry"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    assert_eq!(app.dispatch_all_pending_emails().await, 1);
    assert_eq!(app.mails_to("zoe@example.org").len(), 1);
    // The retried email carries a fresh token that confirms.
    let link = app.local(app.confirmation_links("zoe@example.org").last().unwrap());
    let confirmed = app
        .client
        .post(&link)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    assert_eq!(
        app.subscription_state("zoe@example.org", "newsletter")
            .as_deref(),
        Some("confirmed")
    );
    let again = app
        .admin(Method::POST, &format!("/admin/outbox/{id}/retry"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let bad = app
        .admin(Method::GET, "/admin/outbox?state=nope", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
}

crate::backend_tests!(
    every_admin_route_needs_an_active_key,
    keys_created_on_the_command_line_work,
    lists_and_consent_versions,
    audience_streams_confirmed_subscribers_with_headers,
    subject_lookup_export_and_erasure,
    dead_letters_are_listed_and_retried,
);
