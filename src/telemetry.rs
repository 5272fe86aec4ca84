//! Tracing set-up, and running blocking database work with the caller's span.

use std::io::IsTerminal;

use tracing::Span;
use tracing_subscriber::EnvFilter;

use crate::config::LogSettings;

/// Installs the global subscriber: JSON for machines, readable text on a
/// terminal. `RUST_LOG` overrides the configured filter.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(settings.filter.as_str()));
    let json = match settings.format.as_str() {
        "json" => true,
        "pretty" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests build several apps) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Runs blocking work on actix's blocking pool inside the current span.
pub async fn spawn_blocking_in_span<F, T>(work: F) -> Result<T, actix_web::error::BlockingError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let span = Span::current();
    actix_web::web::block(move || span.in_scope(work)).await
}

/// When a request arrived, for the duration histogram.
#[derive(Clone, Copy)]
struct RequestStart(std::time::Instant);

fn record_duration(request: &actix_web::HttpRequest) {
    use actix_web::HttpMessage;
    let Some(start) = request.extensions().get::<RequestStart>().copied() else {
        return;
    };
    let Some(ctx) = request.app_data::<actix_web::web::Data<crate::context::AppContext>>() else {
        return;
    };
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".to_owned());
    ctx.metrics
        .observe_request(&route, start.0.elapsed().as_secs_f64());
}

/// Request spans that name the route pattern (`/confirm/{token}`), never the
/// path (which carries tokens), and no client address (forwarded headers
/// are not to be trusted, and an IP is personal data).
pub struct RouteSpans;

impl tracing_actix_web::RootSpanBuilder for RouteSpans {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> Span {
        use actix_web::HttpMessage;
        request
            .extensions_mut()
            .insert(RequestStart(std::time::Instant::now()));
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "(unmatched)".to_owned());
        tracing::info_span!(
            "request",
            method = %request.method(),
            route = %route,
            status = tracing::field::Empty,
            request_id = %uuid::Uuid::new_v4(),
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(response) => {
                record_duration(response.request());
                response.status()
            }
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("status", status.as_u16());
        if status.is_server_error() {
            tracing::warn!(parent: &span, status = status.as_u16(), "request failed");
        } else {
            tracing::debug!(parent: &span, status = status.as_u16(), "request done");
        }
    }
}
