//! The accept loop shared by both listeners (hyper 1, HTTP/1.1 with upgrades),
//! and small request/response helpers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::ratelimit::PeerAddr;

/// The response body type of every handler.
pub(crate) type Body = Full<Bytes>;

/// Time a client gets to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time open connections get to finish after shutdown was asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Something that answers HTTP requests.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Answers one request. Errors are already rendered into the response.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// Accepts connections on `listener` until `shutdown` turns true, then lets
/// open connections finish their current request (up to [`DRAIN_TIMEOUT`]).
pub(crate) async fn serve<H: Handler>(
    listener: TcpListener,
    which: &'static str,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let handler = handler.clone();
                    let shutdown = shutdown.clone();
                    conns.spawn(async move {
                        debug!(which, %peer, "connection");
                        serve_connection(stream, peer, handler, shutdown).await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep the listener,
                    // but do not spin.
                    warn!(which, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        debug!(
            which,
            left = conns.len(),
            "closing connections that did not finish"
        );
        conns.abort_all();
    }
}

async fn serve_connection<H: Handler>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |mut req: Request<Incoming>| {
        // Handlers that limit per client (see `ratelimit`) read it from here.
        req.extensions_mut().insert(PeerAddr(peer));
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                debug!(error = %e, "connection ended with an error");
            }
        }
        () = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Completes once shutdown was asked for (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// A response with a status, a content type and a body.
pub(crate) fn response(
    status: hyper::StatusCode,
    content_type: Option<&'static str>,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Some(ct) = content_type {
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(ct),
        );
    }
    resp
}

/// A query parameter's raw value (no percent-decoding: the values used here,
/// JWTs and colibri `pwd`s, are URL-safe by construction).
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The path's segments between slashes (a trailing slash is ignored).
pub(crate) fn segments(path: &str) -> Vec<&str> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    path.split('/').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("jwt=abc&pwd=x"), "pwd"), Some("x"));
        assert_eq!(query_param(Some("jwt=abc&pwd=x"), "jwt"), Some("abc"));
        assert_eq!(query_param(Some("jwtx=abc"), "jwt"), None);
        assert_eq!(query_param(Some("pwd"), "pwd"), Some(""));
        assert_eq!(query_param(None, "pwd"), None);
    }

    #[test]
    fn path_segments() {
        assert_eq!(segments("/a/b/c"), vec!["a", "b", "c"]);
        assert_eq!(segments("/a/b/"), vec!["a", "b"]);
        assert_eq!(segments("/"), vec![""]);
    }
}
