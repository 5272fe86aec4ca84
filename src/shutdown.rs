//! Stopping without cutting a request off.
//!
//! On SIGTERM an instance first drains for `http.shutdown_drain_ms`: it
//! keeps accepting and answering, but `/readyz` answers 503 (so a load
//! balancer takes it out of rotation) and every answer carries
//! `Connection: close` (so a keep-alive client sends its next request on a
//! new connection, to whichever instance). Only then does the server stop
//! accepting and give the requests in flight `http.shutdown_grace_secs` to
//! finish. Without the drain, actix-web would close a kept-alive connection
//! that is idle at that moment, and a request the client had just written
//! into it would be lost unanswered. SIGINT and SIGQUIT stop at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web;
use tokio::signal::unix::{SignalKind, signal};

use crate::context::AppContext;

/// Whether this instance is draining before it stops.
#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    /// True once a SIGTERM came.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Middleware: while draining, every answer closes its connection.
pub async fn close_connections_when_draining(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let draining = req
        .app_data::<web::Data<AppContext>>()
        .is_some_and(|ctx| ctx.draining.is_set());
    let mut res = next.call(req).await?;
    if draining {
        res.response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(res)
}

/// Waits for a stop signal and stops `server` as described above. Returns
/// if the signals cannot be watched (the server then runs until killed).
pub async fn stop_on_signal(server: ServerHandle, draining: &Draining, drain: Duration) {
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    ) else {
        tracing::error!("cannot watch for stop signals; stop this process with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {
            draining.set();
            tracing::info!(drain_ms = drain.as_millis() as u64, "SIGTERM: draining, then stopping");
            // A second SIGTERM, or SIGINT, cuts the drain short.
            tokio::select! {
                _ = tokio::time::sleep(drain) => {}
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("no longer accepting connections; finishing requests in flight");
            server.stop(true).await;
        }
        _ = int.recv() => {
            tracing::info!("SIGINT: stopping now");
            server.stop(false).await;
        }
        _ = quit.recv() => {
            tracing::info!("SIGQUIT: stopping now");
            server.stop(false).await;
        }
    }
}
