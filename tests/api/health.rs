use crate::helpers::{Backend, spawn_app};

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

async fn unknown_routes_answer_404_in_the_asked_format(backend: Backend) {
    let app = spawn_app(backend).await;
    let json = app
        .client
        .get(app.url("/nope"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 404);
    assert_eq!(json.headers()["content-type"], "application/problem+json");
    let html = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(html.status(), 404);
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

async fn hosted_form_shows_the_current_text_unticked(backend: Backend) {
    let app = spawn_app(backend).await;
    let page = app
        .client
        .get(app.url("/lists/newsletter/form"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert!(page.headers().contains_key("content-security-policy"));
    let body = page.text().await.unwrap();
    assert!(body.contains(crate::helpers::CURRENT_TEXT));
    assert!(!body.contains("An older consent text."));
    assert!(body.contains(r#"<input type="checkbox" id="consent" name="consent" value="on">"#));
    assert!(!body.contains("checked"));
    assert!(body.contains(r#"<label for="email">"#));
    let missing = app
        .client
        .get(app.url("/lists/nope/form"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

async fn metrics_count_what_happened(backend: Backend) {
    let app =
        crate::helpers::spawn_app_with(backend, "[metrics]\ntoken = \"scrape-me-please-16\"").await;
    let denied = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let unsubscribe = app
        .confirmed_subscriber("met@example.org", "newsletter")
        .await;
    app.one_click(&unsubscribe).await;
    app.post_form(&[
        ("email", "bot@example.org"),
        ("consent", "on"),
        ("website", "x"),
    ])
    .await;
    let body = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-me-please-16")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "assent_signups_total{outcome=\"accepted\"} 1",
        "assent_signups_total{outcome=\"bot\"} 1",
        "assent_confirmations_total 1",
        "assent_unsubscribes_total{method=\"one_click\"} 1",
        "assent_send_attempts_total 2",
        "assent_unsubscribe_effect_seconds_count 1",
        "assent_outbox_pending 0",
        "assent_outbox_dead 0",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
    assert!(body.contains("assent_http_request_duration_seconds_bucket{route=\"/subscriptions\""));
    assert!(body.contains("assent_db_pool_connections{state=\"in_use\"}"));
}

crate::backend_tests!(
    metrics_count_what_happened,
    health_and_readiness,
    unknown_routes_answer_404_in_the_asked_format,
    hosted_form_shows_the_current_text_unticked,
);

#[test]
fn version_names_the_commit() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_assent"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("assent "), "{text}");
    assert!(text.contains("(commit "), "{text}");
}
