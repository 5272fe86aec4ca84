//! Streaming a response produced page by page on the blocking pool, through
//! a small bounded channel: memory stays flat and a slow reader slows the
//! producer down instead of piling pages up.

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::Bytes;

use crate::context::AppContext;
use crate::db::{DbConnection, DbError};
use crate::error::{AppError, Format};
use crate::telemetry::spawn_blocking_in_span;

/// What produces the body: writes chunks to the sink (false = stop).
pub type Producer = Box<
    dyn FnOnce(&mut DbConnection, &mut dyn FnMut(Vec<u8>) -> bool) -> Result<u64, DbError> + Send,
>;

/// Takes a connection first (so an unavailable database is a 503, not a
/// broken 200), then streams what `produce` writes.
pub async fn stream(
    ctx: &AppContext,
    content_type: &'static str,
    produce: Producer,
) -> Result<HttpResponse, AppError> {
    let pool = ctx.pool.clone();
    let conn = spawn_blocking_in_span(move || pool.get().map_err(DbError::from))
        .await
        .map_err(|e| AppError::internal(anyhow::anyhow!("blocking pool: {e}"), Format::Json))?
        .map_err(|e| AppError::database(e, Format::Json))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let span = tracing::Span::current();
    actix_web::rt::task::spawn_blocking(move || {
        let _entered = span.enter();
        let mut conn = conn;
        let mut sink = |chunk: Vec<u8>| tx.blocking_send(Ok(Bytes::from(chunk))).is_ok();
        match produce(&mut conn, &mut sink) {
            Ok(rows) => tracing::info!(rows, "export streamed"),
            Err(error) => {
                tracing::error!(error = %error, "export failed midway; the response is cut short");
                // An error item aborts the chunked body, so the reader sees
                // a truncated transfer rather than a complete-looking file.
                let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}
