//! Errors of the control plane: what goes on the wire ([`ApiError`]) and what
//! stops the control plane itself ([`ControlError`]).

use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode, header};

use crate::token::TokenError;

/// An HTTP error answer: a status and a stable machine-readable code.
///
/// Rendered as `{"error": code, "message": message}` with
/// `Content-Type: application/json`. The message is for humans and never
/// carries a token, a secret or a colibri `pwd`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `token-expired`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// `400 bad-request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    /// `404 not-found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    /// `405 method-not-allowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "method not allowed on this path",
        )
    }

    /// The JSON body of this error.
    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.code, "message": self.message }).to_string()
    }

    /// This error as an HTTP response. The code also rides along as an
    /// [`ErrorCode`] response extension, so that a layer in front of a handler
    /// (the operator gate) can count refusals by code without parsing bodies.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(self.body())));
        *resp.status_mut() = self.status;
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// The machine-readable code of an error response, as a response extension
/// (never sent on the wire; the body carries the same code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        Self::new(e.status(), e.code(), e.to_string())
    }
}

/// Why the control plane could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({which} listener): {source}")]
    Bind {
        /// Which listener: `public` or `private`.
        which: &'static str,
        /// The address that was asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The settings are unusable (e.g. an empty secret or a bad `server_id`).
    #[error("invalid control settings: {0}")]
    Settings(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn renders_json_with_code_and_message() {
        let resp = ApiError::new(StatusCode::FORBIDDEN, "room-mismatch", "nope").into_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            resp.extensions().get::<ErrorCode>(),
            Some(&ErrorCode("room-mismatch"))
        );
        assert_eq!(
            resp.headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("full body")
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"error": "room-mismatch", "message": "nope"})
        );
    }
}
