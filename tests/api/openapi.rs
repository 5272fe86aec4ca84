//! The OpenAPI description: served at `/openapi.json`, equal to the
//! committed `docs/openapi.json`, and describing every registered route.

use std::collections::BTreeSet;

use crate::helpers::{Backend, spawn_app};

const REGENERATE: &str = "regenerate it with `cargo run -q -- openapi > docs/openapi.json`";

fn committed() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Line endings unified and keys in one order, so an editor's CRLF or a
/// reordered object is not a difference but any change of content is.
fn normalised(text: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(&text.replace("\r\n", "\n")).expect("the document is JSON");
    serde_json::to_string_pretty(&value).unwrap()
}

/// Every (method, path pattern) the document describes.
fn operations(document: &serde_json::Value) -> BTreeSet<(String, String)> {
    document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

/// Every registered route as (method, pattern): the public table and the
/// admin routes.
fn registered() -> BTreeSet<(String, String)> {
    let mut routes: BTreeSet<(String, String)> = assent::routes::PUBLIC_ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    for route in assent::routes::admin::ROUTES {
        // The table holds the patterns themselves.
        let method = route.method.as_str().to_owned();
        routes.insert((method, format!("/admin{}", route.pattern)));
    }
    routes
}

async fn openapi_json_is_served_and_matches_docs(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served = response.text().await.unwrap();
    let document: serde_json::Value = serde_json::from_str(&served).expect("served JSON");
    let version = document["openapi"].as_str().expect("an openapi member");
    assert!(version.starts_with("3.1."), "OpenAPI {version}");
    assert!(
        normalised(&served) == normalised(&committed()),
        "GET /openapi.json differs from docs/openapi.json: {REGENERATE}"
    );
    let documented = operations(&document);
    assert_eq!(
        documented,
        registered(),
        "the document must describe every registered route, and only those"
    );
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["admin_key"]["scheme"], "bearer");
    for (method, path) in &documented {
        let operation = &document["paths"][path][method.to_lowercase()];
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{method} {path} documents no response"
        );
        if path.starts_with("/admin/") {
            assert_eq!(
                operation["security"],
                serde_json::json!([{ "admin_key": [] }]),
                "{method} {path}"
            );
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path} documents no 401"
            );
        }
    }
}

crate::backend_tests!(openapi_json_is_served_and_matches_docs);

/// `assent openapi` prints the committed document byte for byte (line
/// endings aside), so regenerating it is one command.
#[test]
fn the_cli_prints_the_committed_document() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_assent"))
        .arg("openapi")
        .env_remove("ASSENT_CONFIG")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(
        printed == committed().replace("\r\n", "\n"),
        "docs/openapi.json is stale: {REGENERATE}"
    );
}
