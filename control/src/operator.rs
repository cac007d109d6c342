//! The private (operator) listener: jitsi-videobridge's health, version and stats paths.

use std::sync::Arc;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::error::ApiError;
use crate::http::{Body, Handler, response};
use crate::media::MediaPlane;
use crate::stats::{Sampler, stats_json};

/// State of the private listener.
pub(crate) struct Operator<M> {
    pub(crate) media: Arc<M>,
    pub(crate) sampler: Arc<Sampler>,
}

impl<M: MediaPlane> Handler for Operator<M> {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let get = req.method() == Method::GET;
        let json = |v: serde_json::Value| {
            response(StatusCode::OK, Some("application/json"), v.to_string())
        };
        match req.uri().path() {
            "/about/health" if get => response(StatusCode::OK, None, ""),
            "/about/version" if get => json(serde_json::json!({
                "name": "ringbridge",
                "version": env!("CARGO_PKG_VERSION"),
                "os": std::env::consts::OS,
            })),
            "/colibri/stats" if get => json(stats_json(
                &self.media.stats(),
                &self.sampler.rates(),
                SystemTime::now(),
            )),
            "/about/health" | "/about/version" | "/colibri/stats" => {
                ApiError::method_not_allowed().into_response()
            }
            _ => ApiError::not_found("no such path").into_response(),
        }
    }
}
