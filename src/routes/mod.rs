//! HTTP routes, one file per feature; `configure` registers them all, for
//! the server and the tests alike.

pub mod admin;
pub mod body;
pub mod confirm;
pub mod db_call;
pub mod error_pages;
pub mod health;
pub mod leave;
pub mod pages;
pub mod refuse;
pub mod request;
pub mod subscribe;

use actix_web::dev::HttpServiceFactory;
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
        .service(token_resource(
            "/confirm/{token}",
            vec![
                web::get().to(confirm::show),
                web::post().to(confirm::confirm),
            ],
        ))
        .service(token_resource(
            "/unsubscribe/{token}",
            vec![
                web::get().to(leave::show),
                web::post().to(leave::unsubscribe),
            ],
        ))
        .service(token_resource(
            "/withdraw/{token}",
            vec![web::post().to(leave::withdraw)],
        ))
        .service(token_resource(
            "/refuse/{token}",
            vec![web::get().to(refuse::show), web::post().to(refuse::act)],
        ))
        .configure(admin::configure);
}
