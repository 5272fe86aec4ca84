//! HTTP routes, one file per feature; `configure` registers them all, for
//! the server and the tests alike.

pub mod admin;
pub mod body;
pub mod confirm;
pub mod db_call;
pub mod health;
pub mod leave;
pub mod openapi;
pub mod pages;
pub mod refuse;
pub mod request;
pub mod subscribe;

use actix_web::http::Method;
use actix_web::web;

/// Declares the public routes once: `register_public` registers exactly
/// these and `PUBLIC_ROUTES` lists them, so the OpenAPI test can check that
/// the document describes every route and nothing else.
macro_rules! public_routes {
    ($($method:ident $path:literal => $handler:path,)*) => {
        /// Every public route as (method, path pattern), in registration order.
        pub const PUBLIC_ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn register_public(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::method(Method::$method).to($handler));)*
        }
    };
}

public_routes! {
    GET "/healthz" => health::healthz,
    GET "/readyz" => health::readyz,
    GET "/metrics" => health::metrics,
    GET "/openapi.json" => openapi::document,
    GET "/" => pages::index,
    GET "/assets/assent.css" => pages::stylesheet,
    GET "/assets/pow.js" => pages::pow_script,
    GET "/lists/{slug}/challenge" => pages::challenge,
    GET "/lists/{slug}/form" => pages::form,
    GET "/lists/{slug}/check-inbox" => pages::check_inbox,
    POST "/subscriptions" => subscribe::subscribe,
    OPTIONS "/subscriptions" => subscribe::preflight,
    GET "/confirm/{token}" => confirm::show,
    POST "/confirm/{token}" => confirm::confirm,
    GET "/unsubscribe/{token}" => leave::show,
    POST "/unsubscribe/{token}" => leave::unsubscribe,
    POST "/withdraw/{token}" => leave::withdraw,
    GET "/refuse/{token}" => refuse::show,
    POST "/refuse/{token}" => refuse::act,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    register_public(cfg);
    cfg.configure(admin::configure);
}
