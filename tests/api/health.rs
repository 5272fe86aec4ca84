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

crate::backend_tests!(
    health_and_readiness,
    unknown_routes_answer_404_in_the_asked_format,
    hosted_form_shows_the_current_text_unticked,
);
