use crate::helpers::{Backend, spawn_app_with, text_part};

fn overrides() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("newsletter")).unwrap();
    std::fs::write(
        dir.path().join("newsletter/confirmation_email.txt"),
        "Dear reader of {{ list_name }},\n\nclick here to confirm: {{ confirm_url }}\n\nNot you? {{ refuse_url }}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("check_inbox.html"),
        "{% extends \"layout.html\" %}{% block content %}<h1>Nearly there, {{ title }}</h1>{% endblock %}",
    )
    .unwrap();
    dir
}

async fn lists_render_from_override_templates(backend: Backend) {
    let dir = overrides();
    let app = spawn_app_with(
        backend,
        &format!("templates_dir = \"{}\"", dir.path().display()),
    )
    .await;
    app.sign_up("tom@example.org", "newsletter").await;
    app.sign_up("una@example.org", "offers").await;
    app.dispatch_all_pending_emails().await;
    let custom = text_part(&app.mails_to("tom@example.org")[0].data);
    assert!(custom.starts_with("Dear reader of Clinic news"), "{custom}");
    assert_eq!(app.confirmation_links("tom@example.org").len(), 1);
    // Other lists keep the built-in template.
    let builtin = text_part(&app.mails_to("una@example.org")[0].data);
    assert!(builtin.contains("Bitte bestätigen Sie"));
    let page = app
        .client
        .get(app.url("/lists/offers/check-inbox"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Nearly there"));
}

async fn a_broken_override_stops_the_start(backend: Backend) {
    for (file, source, expect) in [
        ("confirm.html", "{% if %}", "confirm.html"),
        (
            "welcome_email.txt",
            "{{ no_such_variable }}",
            "welcome_email.txt",
        ),
        ("unknown.html", "hello", "unknown.html"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), source).unwrap();
        let (_db, url) = crate::helpers::TestDatabase::create(backend);
        let toml = format!(
            "database_url = \"{url}\"\nmail_url = \"file://{}\"\ntemplates_dir = \"{}\"\n",
            dir.path().display(),
            dir.path().display()
        );
        let settings = assent::config::Settings::from_toml(&toml)
            .unwrap()
            .validate()
            .unwrap();
        let error = match assent::startup::build_context(
            settings,
            std::sync::Arc::new(assent::clock::SystemClock),
        ) {
            Ok(_) => panic!("{file}: a broken override was accepted"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(expect), "{file}: {error}");
    }
}

async fn a_lists_overrides_shape_its_result_and_error_pages(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("offers")).unwrap();
    std::fs::write(
        dir.path().join("offers/message.html"),
        "{% extends \"layout.html\" %}{% block content %}<h1>Praxis: {{ title }}</h1><p>{{ message }}</p>{% endblock %}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("offers/signup_errors.html"),
        "{% extends \"layout.html\" %}{% block content %}<h1>Praxis-Fehler</h1>{% for e in errors %}<p>{{ e.detail }}</p>{% endfor %}<a href=\"{{ back_url }}\">{{ t.go_back }}</a>{% endblock %}",
    )
    .unwrap();
    let app = spawn_app_with(
        backend,
        &format!("templates_dir = \"{}\"", dir.path().display()),
    )
    .await;
    // The sign-up's error page.
    let errors = app
        .post_form(&[("email", "nope"), ("consent", "on"), ("list", "offers")])
        .await;
    assert_eq!(errors.status(), 422);
    let body = errors.text().await.unwrap();
    assert!(body.contains("<h1>Praxis-Fehler</h1>"), "{body}");
    assert!(
        body.contains("Bitte geben Sie eine gültige E-Mail-Adresse ein."),
        "{body}"
    );
    // Other lists keep the built-in page.
    let builtin = app.post_form(&[("email", "nope"), ("consent", "on")]).await;
    let body = builtin.text().await.unwrap();
    assert!(!body.contains("Praxis"), "{body}");
    assert!(body.contains("The sign-up is not complete"), "{body}");
    // The refusal page's result.
    app.sign_up("vic@example.org", "offers").await;
    app.dispatch_all_pending_emails().await;
    let refuse = crate::helpers::links_in(&text_part(&app.mails_to("vic@example.org")[0].data))
        .into_iter()
        .find(|l| l.contains("/refuse/"))
        .unwrap();
    let refused = app
        .client
        .post(app.local(&refuse))
        .form(&[("action", "refuse")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 200);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("<h1>Praxis: Keine weiteren Bestätigungs-E-Mails</h1>"),
        "{body}"
    );
    // The unsubscribe result and a token error on the list's pages.
    let url = app.confirmed_subscriber("wil@example.org", "offers").await;
    let bad = app
        .client
        .post(&url)
        .form(&[("action", "nonsense")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body = bad.text().await.unwrap();
    assert!(
        body.contains("<h1>Praxis: Die Anfrage konnte nicht gelesen werden</h1>"),
        "{body}"
    );
    let done = app
        .client
        .post(&url)
        .form(&[("action", "unsubscribe")])
        .send()
        .await
        .unwrap();
    let body = done.text().await.unwrap();
    assert!(body.contains("<h1>Praxis: Abgemeldet</h1>"), "{body}");
}

crate::backend_tests!(
    lists_render_from_override_templates,
    a_broken_override_stops_the_start,
    a_lists_overrides_shape_its_result_and_error_pages,
);
