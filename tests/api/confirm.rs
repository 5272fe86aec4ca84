use crate::helpers::{Backend, spawn_app};

async fn unknown_and_malformed_tokens_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    for token in [
        "A".repeat(43),
        "short".to_owned(),
        "!".repeat(43),
        "%00".to_owned(),
    ] {
        let url = app.url(&format!("/confirm/{token}"));
        let page = app.client.get(&url).send().await.unwrap();
        assert_eq!(page.status(), 404, "{token}");
        assert!(page.text().await.unwrap().contains("Link not found"));
        let post = app.client.post(&url).send().await.unwrap();
        assert_eq!(post.status(), 404, "{token}");
        let json = app
            .client
            .post(&url)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(json.status(), 404);
        assert_eq!(json.headers()["content-type"], "application/problem+json");
    }
}

async fn expired_tokens_are_410_and_say_how_to_sign_up_again(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sign_up("exp@example.org", "newsletter").await;
    app.dispatch_all_pending_emails().await;
    let link = app.local(&app.confirmation_links("exp@example.org")[0]);
    app.clock
        .advance(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    let page = app.client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 410);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let body = page.text().await.unwrap();
    assert!(body.contains("Link expired"));
    assert!(body.contains("sign up again"));
    assert!(body.contains(r#"href="/lists/newsletter/form""#));
    let post = app.client.post(&link).send().await.unwrap();
    assert_eq!(post.status(), 410);
    assert_eq!(
        app.subscription_state("exp@example.org", "newsletter")
            .as_deref(),
        Some("pending")
    );
    assert!(
        !app.event_kinds("exp@example.org")
            .contains(&"consent_confirmed".to_owned())
    );
    // A new sign-up sends a new, working link.
    app.sign_up("exp@example.org", "newsletter").await;
    app.dispatch_all_pending_emails().await;
    let fresh = app.local(&app.confirmation_links("exp@example.org")[1]);
    assert_eq!(app.client.post(&fresh).send().await.unwrap().status(), 200);
    assert_eq!(
        app.subscription_state("exp@example.org", "newsletter")
            .as_deref(),
        Some("confirmed")
    );
}

async fn confirming_a_list_with_a_confirmed_url_redirects(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sign_up("hal@example.org", "offers").await;
    app.dispatch_all_pending_emails().await;
    let link = app.local(&app.confirmation_links("hal@example.org")[0]);
    let page = app.client.get(&link).send().await.unwrap();
    let body = page.text().await.unwrap();
    assert!(body.contains("Ich willige ein, Angebote per E-Mail zu erhalten."));
    assert!(body.contains(r#"lang="de""#));
    let post = app.client.post(&link).send().await.unwrap();
    assert_eq!(post.status(), 303);
    assert_eq!(
        post.headers()["location"],
        "https://clinic.example/offers/welcome"
    );
}

fn form_action(response: &reqwest::Response) -> String {
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    csp.split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix("form-action "))
        .unwrap_or_else(|| panic!("no form-action in {csp}"))
        .to_owned()
}

async fn the_confirm_form_may_be_redirected_to_the_confirmed_url(backend: Backend) {
    let app = spawn_app(backend).await;
    // `offers` sends confirmed browsers to https://clinic.example/offers/welcome.
    app.sign_up("ian@example.org", "offers").await;
    app.sign_up("jon@example.org", "newsletter").await;
    app.dispatch_all_pending_emails().await;
    let offers = app.local(&app.confirmation_links("ian@example.org")[0]);
    let page = app.client.get(&offers).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // Chrome applies form-action to the 303 that answers the POST.
    assert_eq!(form_action(&page), "'self' https://clinic.example");
    let post = app.client.post(&offers).send().await.unwrap();
    assert_eq!(post.status(), 303);
    assert_eq!(
        post.headers()["location"],
        "https://clinic.example/offers/welcome"
    );
    // A list without a confirmed URL answers the POST itself.
    let newsletter = app.local(&app.confirmation_links("jon@example.org")[0]);
    let page = app.client.get(&newsletter).send().await.unwrap();
    assert_eq!(form_action(&page), "'self'");
    // Pages without a form allow no form target at all.
    let confirmed = app.client.post(&newsletter).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    assert_eq!(form_action(&confirmed), "'none'");
}

async fn a_german_lists_expired_link_answers_in_german(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sign_up("kim@example.org", "offers").await;
    app.dispatch_all_pending_emails().await;
    let link = app.local(&app.confirmation_links("kim@example.org")[0]);
    app.clock
        .advance(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    for response in [
        app.client.get(&link).send().await.unwrap(),
        app.client.post(&link).send().await.unwrap(),
    ] {
        assert_eq!(response.status(), 410);
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body = response.text().await.unwrap();
        assert!(body.contains(r#"lang="de""#), "{body}");
        assert!(body.contains("Link abgelaufen"), "{body}");
        assert!(body.contains(r#"href="/lists/offers/form""#), "{body}");
    }
}

crate::backend_tests!(
    unknown_and_malformed_tokens_are_404,
    expired_tokens_are_410_and_say_how_to_sign_up_again,
    confirming_a_list_with_a_confirmed_url_redirects,
    the_confirm_form_may_be_redirected_to_the_confirmed_url,
    a_german_lists_expired_link_answers_in_german,
);
