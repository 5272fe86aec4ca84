//! HTTP routes, one file per feature; `configure` registers them all, for
//! the server and the tests alike.

pub mod admin;
pub mod body;
pub mod confirm;
pub mod db_call;
pub mod health;
pub mod leave;
pub mod pages;
pub mod refuse;
pub mod request;
pub mod subscribe;

use actix_web::web;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .route("/", web::get().to(pages::index))
        .route("/assets/assent.css", web::get().to(pages::stylesheet))
        .route("/assets/pow.js", web::get().to(pages::pow_script))
        .route("/lists/{slug}/challenge", web::get().to(pages::challenge))
        .route("/lists/{slug}/form", web::get().to(pages::form))
        .route(
            "/lists/{slug}/check-inbox",
            web::get().to(pages::check_inbox),
        )
        .route("/subscriptions", web::post().to(subscribe::subscribe))
        .route(
            "/subscriptions",
            web::method(actix_web::http::Method::OPTIONS).to(subscribe::preflight),
        )
        .route("/confirm/{token}", web::get().to(confirm::show))
        .route("/confirm/{token}", web::post().to(confirm::confirm))
        .route("/unsubscribe/{token}", web::get().to(leave::show))
        .route("/unsubscribe/{token}", web::post().to(leave::unsubscribe))
        .route("/withdraw/{token}", web::post().to(leave::withdraw))
        .route("/refuse/{token}", web::get().to(refuse::show))
        .route("/refuse/{token}", web::post().to(refuse::act))
        .configure(admin::configure);
}
