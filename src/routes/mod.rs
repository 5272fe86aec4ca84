//! HTTP routes, one file per feature; `configure` registers them all, for
//! the server and the tests alike.

pub mod admin;
pub mod body;
pub mod confirm;
pub mod db_call;
pub mod error_pages;
pub mod health;
pub mod leave;
pub mod openapi;
pub mod pages;
pub mod refuse;
pub mod request;
pub mod subscribe;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::{AppError, ErrorKind};

/// Any path or method nothing else answers: 404 in the format asked for.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::new(
        ErrorKind::NotFound,
        request::page_format(&req),
    ))
}

/// A path with a token in it, whose every answer carries the headers of
/// [`request::token_headers`]. Other methods get the usual 404, not 405.
fn token_resource(path: &str, routes: Vec<actix_web::Route>) -> impl HttpServiceFactory {
    routes.into_iter().fold(
        web::resource(path)
            .wrap(from_fn(request::token_headers))
            .default_service(web::to(not_found)),
        |resource, route| resource.route(route),
    )
}

/// A path without a token; other methods get the usual 404, not 405.
fn plain_resource(path: &str, routes: Vec<actix_web::Route>) -> impl HttpServiceFactory {
    routes.into_iter().fold(
        web::resource(path).default_service(web::to(not_found)),
        |resource, route| resource.route(route),
    )
}

/// Groups routes by path, keeping the order of first appearance.
fn by_path(
    routes: Vec<(&'static str, actix_web::Route)>,
) -> Vec<(&'static str, Vec<actix_web::Route>)> {
    let mut grouped: Vec<(&'static str, Vec<actix_web::Route>)> = Vec::new();
    for (path, route) in routes {
        match grouped.iter_mut().find(|(p, _)| *p == path) {
            Some((_, same)) => same.push(route),
            None => grouped.push((path, vec![route])),
        }
    }
    grouped
}

/// Declares the public routes once: `register_public` registers exactly
/// these and `PUBLIC_ROUTES` lists them, so the OpenAPI test can check that
/// the document describes every route and nothing else.
macro_rules! public_routes {
    ($($method:ident $path:literal => $handler:path,)*) => {
        /// Every public route as (method, path pattern), in registration order.
        pub const PUBLIC_ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn register_public(cfg: &mut web::ServiceConfig) {
            let routes = vec![$(($path, web::method(Method::$method).to($handler))),*];
            for (path, routes) in by_path(routes) {
                // Token pages: never referred, never cached, errors included.
                if path.contains("{token}") {
                    cfg.service(token_resource(path, routes));
                } else {
                    cfg.service(plain_resource(path, routes));
                }
            }
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
