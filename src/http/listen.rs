//! The connection loop: accepts TCP connections and serves HTTP/1.1 on each
//! with a router, within limits that keep a client from holding the server:
//!
//! - at most `max_connections` at once; beyond that, new connections wait
//!   in the kernel's backlog until one closes;
//! - at most `max_per_client` of them from one address: the next one from
//!   there is closed at once, so one client holding connections open (a
//!   slowloris) leaves the others room;
//! - a request's headers must arrive within `read_timeout`; the same timer
//!   runs while a kept-alive connection waits for its next request, so an
//!   idle connection is closed after `read_timeout` too;
//! - its body must arrive within `read_timeout` (the `Body` extractor's
//!   timer: 408), and a `Content-Length` over the body limit is refused
//!   before a byte of it is read (413, `guard` below).
//!
//! axum's own `serve` has no timeouts and no limit; this is the same loop
//! (hyper under the router, graceful shutdown) with them.

use std::convert::Infallible;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

use super::{ApiError, BODY_LIMIT, CATALOG_BODY_LIMIT};

/// Request headers larger than this, in all, are refused with 431.
pub const HEADER_LIMIT: usize = 16 * 1024;
/// The HTTP layer's own read buffer: headers beyond it are refused by hyper
/// itself, with a bare 431.
const READ_BUFFER: usize = 128 * 1024;

/// What one connection may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub read_timeout: Duration,
    pub max_connections: usize,
    pub max_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { read_timeout: Duration::from_secs(10), max_connections: 1024, max_per_client: 256 }
    }
}

/// Connections open per client address.
#[derive(Default)]
struct PerClient(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl PerClient {
    /// Counts one more connection from `ip`, unless it has `max` already.
    fn open(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<ClientSlot> {
        let mut open = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot { clients: self.clone(), ip })
    }
}

/// One open connection of a client; counted down when dropped.
struct ClientSlot {
    clients: Arc<PerClient>,
    ip: std::net::IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// How long a request's body may take to arrive, for the `Body` extractor.
#[derive(Clone, Copy, Debug)]
pub struct ReadTimeout(pub Duration);

/// Serves `router` on `listener` until `shutdown`, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let clients = Arc::new(PerClient::default());
    // Dropped when shutdown comes: every connection task watches it.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    // Each connection task holds a receiver; the loop waits for them all.
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = signal_tx.closed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = signal_tx.closed() => break,
        };
        let Some(slot) = clients.open(peer.ip(), limits.max_per_client.max(1)) else {
            tracing::debug!(%peer, "closing a connection: its address holds max_per_client already");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(ReadTimeout(limits.read_timeout));
            let mut router = router.clone();
            async move { Ok::<_, Infallible>(router.call(request).await.unwrap_or_else(|e| match e {})) }
        });
        let (signal_tx, close_rx) = (signal_tx.clone(), close_rx.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.read_timeout).max_buf_size(READ_BUFFER);
            let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
            let mut closing = pin!(signal_tx.closed());
            // `closing` is polled until it completes, never after.
            let mut closed = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended");
                        }
                        break;
                    }
                    _ = &mut closing, if !closed => {
                        closed = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop((permit, slot, close_rx));
        });
    }
    drop((close_rx, listener));
    close_tx.closed().await;
    Ok(())
}

/// Refuses, before reading anything more, a request whose headers are too
/// large (431) or whose `Content-Length` is over the body limit (413): both
/// as problem+json, like every other error.
///
/// An error answered to a request with a body says `Connection: close`:
/// the body may not have been read (a request refused at authentication
/// never is), and hyper then closes the connection; without the header a
/// keep-alive client would send its next request into a closing socket.
pub async fn guard(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let size: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if size > HEADER_LIMIT {
        return ApiError::HeadersTooLarge.into_response();
    }
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let limit = match (request.method(), request.uri().path()) {
        (&axum::http::Method::PUT, super::route::CATALOG) => CATALOG_BODY_LIMIT,
        (&axum::http::Method::POST, super::route::LEAKS) => super::leaks::BODY_LIMIT,
        _ => BODY_LIMIT,
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    let has_body = declared.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING);
    let mut response = next.run(request).await;
    if has_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
    response
}
