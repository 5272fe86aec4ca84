//! Error pages of a list in the list's language and from its template
//! overrides. `error.rs` renders every error page from the built-in English
//! templates, since an error knows neither the templates nor the lists; this
//! middleware, which sees the application context, renders the page again
//! when the error names a list (`AppError::list_slug`).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::context::AppContext;
use crate::error::{AppError, Format};

/// Re-renders the HTML page of an error that belongs to a list; every other
/// response passes unchanged. Status and headers stay as they are.
pub async fn localize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let ctx = req.app_data::<web::Data<AppContext>>().cloned();
    let response = next.call(req).await?.map_into_boxed_body();
    let Some(ctx) = ctx else {
        return Ok(response);
    };
    let page = response
        .response()
        .error()
        .and_then(|error| error.as_error::<AppError>())
        .filter(|error| error.format == Format::Html)
        .and_then(|error| {
            let list = ctx.lists.by_slug(error.list_slug()?)?;
            let lang = list.language();
            Some(error.render_page(lang, &|name, values| {
                ctx.templates.render_for(list.slug(), name, lang, values)
            }))
        });
    match page {
        None => Ok(response),
        Some(Ok(body)) => Ok(response.map_body(|_, _| BoxBody::new(body))),
        Some(Err(error)) => {
            // The English page already in the response is still readable.
            tracing::error!(error = %error, "rendering a list's error page failed");
            Ok(response)
        }
    }
}
