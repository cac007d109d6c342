//! CORS for the signalling paths (`public.allowed_origins`), so that a web app
//! served from another origin can join, leave, mute and refresh tokens.
//!
//! Only `/conferences/...` answers carry CORS headers; the page, its files and
//! the colibri websocket (which browsers open without CORS) do not. An allowed
//! `Origin` is echoed in `Access-Control-Allow-Origin` with `Vary: Origin`,
//! and `Location` and `Link` are exposed so the app can find its endpoint and
//! its colibri websocket. No credentials mode: the token is a header the app
//! sets itself. A preflight (`OPTIONS`) from an origin not on the list gets
//! `403 origin-not-allowed`.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use crate::error::ApiError;
use crate::http::{Body, response};

/// Methods a cross-origin app may use on the signalling paths.
const ALLOW_METHODS: &str = "POST, DELETE, PUT, OPTIONS";
/// Request headers a cross-origin app may send.
const ALLOW_HEADERS: &str = "Authorization, Content-Type";
/// Response headers a cross-origin app may read.
const EXPOSE_HEADERS: &str = "Location, Link";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE_S: &str = "600";

/// The origins allowed to call the signalling paths from a browser.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    /// `public.allowed_origins`: exact origins (`https://app.example.com`, no
    /// trailing slash), or `"*"` for any. Empty: CORS off (the default).
    pub fn new(origins: &[String]) -> Self {
        Self {
            origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
        }
    }

    /// The request's `Origin` if it is allowed.
    fn allowed<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(text))
            .then_some(origin)
    }

    /// Whether `segs` is a signalling path that CORS applies to.
    pub(crate) fn applies(segs: &[&str]) -> bool {
        segs.first() == Some(&"conferences")
    }

    /// The answer to a preflight request.
    pub(crate) fn preflight(&self, headers: &HeaderMap) -> Response<Body> {
        let Some(origin) = self.allowed(headers) else {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "origin-not-allowed",
                "this origin is not in public.allowed_origins",
            )
            .into_response();
        };
        let mut resp = response(StatusCode::NO_CONTENT, None, "");
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_S),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        resp
    }

    /// Adds the CORS headers to an answer for a request with `headers`.
    pub(crate) fn decorate(&self, headers: &HeaderMap, resp: &mut Response<Body>) {
        if self.origins.is_empty() {
            return;
        }
        let h = resp.headers_mut();
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = self.allowed(headers) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(o: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static(o));
        h
    }

    fn get(r: &Response<Body>, name: header::HeaderName) -> Option<&str> {
        r.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn off_by_default() {
        let cors = Cors::default();
        let mut resp = response(StatusCode::CREATED, None, "");
        cors.decorate(&with_origin("https://app.example"), &mut resp);
        assert!(resp.headers().is_empty());
        let pre = cors.preflight(&with_origin("https://app.example"));
        assert_eq!(pre.status(), StatusCode::FORBIDDEN);
        assert_eq!(get(&pre, header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
    }

    #[test]
    fn allowed_origin_is_echoed_with_location_and_link_exposed() {
        let cors = Cors::new(&["https://app.example/".into()]);
        let mut resp = response(StatusCode::CREATED, None, "");
        cors.decorate(&with_origin("https://app.example"), &mut resp);
        assert_eq!(
            get(&resp, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://app.example")
        );
        assert_eq!(
            get(&resp, header::ACCESS_CONTROL_EXPOSE_HEADERS),
            Some("Location, Link")
        );
        let pre = cors.preflight(&with_origin("https://app.example"));
        assert_eq!(pre.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            get(&pre, header::ACCESS_CONTROL_ALLOW_HEADERS),
            Some("Authorization, Content-Type")
        );
        assert!(
            get(&pre, header::ACCESS_CONTROL_ALLOW_METHODS).is_some_and(|m| m.contains("DELETE"))
        );

        let mut other = response(StatusCode::CREATED, None, "");
        cors.decorate(&with_origin("https://evil.example"), &mut other);
        assert_eq!(get(&other, header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
        assert_eq!(get(&other, header::VARY), Some("Origin"));
        assert_eq!(
            cors.preflight(&with_origin("https://evil.example"))
                .status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn star_allows_any_origin() {
        let cors = Cors::new(&["*".into()]);
        let mut resp = response(StatusCode::CREATED, None, "");
        cors.decorate(&with_origin("http://localhost:3000"), &mut resp);
        assert_eq!(
            get(&resp, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("http://localhost:3000")
        );
    }
}
