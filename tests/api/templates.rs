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

crate::backend_tests!(
    lists_render_from_override_templates,
    a_broken_override_stops_the_start
);
