//! The bridge's own room page (issue 12): `GET /` and `GET /{room}` on the
//! public listener serve one small web app, compiled into the binary, and
//! `GET /_app/{file}` its scripts and stylesheet.
//!
//! The page is plain ES modules (no build step, no CDN). Every URL it uses is
//! relative to where it was loaded, so it works behind a reverse proxy under a
//! path prefix (`https://meet.example.com/video/demo` loads
//! `https://meet.example.com/video/_app/app.js` and posts to
//! `https://meet.example.com/video/conferences/demo/endpoints`).
//!
//! `_app` cannot be a room: room paths are one segment, and the routes
//! `conferences`, `colibri-ws` and `_app` are matched first. The page is served
//! with a strict `Content-Security-Policy` (scripts, styles and connections to
//! its own origin only) and `Referrer-Policy: no-referrer`; the token travels in
//! the URL fragment, which browsers never send to a server.
//!
//! [`cors`] implements `public.allowed_origins` for the signalling paths.

mod assets;
pub mod cors;

use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};

use crate::error::ApiError;
use crate::http::{Body, response};

pub use assets::{ASSETS, Asset, SCRIPT_AND_STYLE_BUDGET, script_and_style_bytes};

/// The first path segment under which the page's files are served.
pub const ASSET_PREFIX: &str = "_app";

/// First path segments that are routes of their own, never room pages.
const RESERVED: [&str; 3] = ["conferences", "colibri-ws", ASSET_PREFIX];

/// The page's `Content-Security-Policy`: scripts, styles and fetches from the
/// page's own origin only (`'self'` covers same-origin `ws:`/`wss:` in CSP 3),
/// no inline script, no plugins, no framing.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Answers `GET`/`HEAD` of the page and its files; `None` when `segs` (the
/// path's segments, see [`crate::http::segments`]) is not one of them.
///
/// `trailing_slash` says whether the path ended in `/`: `/demo/` is sent to
/// `../demo` so that the page's relative URLs resolve next to it.
pub(crate) fn handle(
    method: &Method,
    segs: &[&str],
    trailing_slash: bool,
    if_none_match: Option<&HeaderValue>,
) -> Option<Result<Response<Body>, ApiError>> {
    let asset = match segs {
        [""] => assets::index(),
        [prefix, file] if *prefix == ASSET_PREFIX => match assets::find(file) {
            Some(a) => a,
            None => return Some(Err(ApiError::not_found("no such file"))),
        },
        [room] if !RESERVED.contains(room) => {
            if trailing_slash {
                return Some(method_ok(method).map(|()| redirect_to_room(room)));
            }
            assets::index()
        }
        _ => return None,
    };
    Some(method_ok(method).map(|()| serve(method, asset, if_none_match)))
}

fn method_ok(method: &Method) -> Result<(), ApiError> {
    if method == Method::GET || method == Method::HEAD {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed())
    }
}

/// `308` from `/{room}/` to `../{room}` (relative, so a path prefix is kept).
fn redirect_to_room(room: &str) -> Response<Body> {
    let mut resp = response(StatusCode::PERMANENT_REDIRECT, None, "");
    // The segment came from the request line, so it is header-safe.
    if let Ok(v) = HeaderValue::from_str(&format!("../{room}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn serve(
    method: &Method,
    asset: &'static Asset,
    if_none_match: Option<&HeaderValue>,
) -> Response<Body> {
    let etag = asset.etag();
    let fresh = if_none_match
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, &[][..])
    } else if method == Method::HEAD {
        (StatusCode::OK, &[][..])
    } else {
        (StatusCode::OK, asset.body)
    };
    let mut resp = response(status, Some(asset.content_type), body);
    let h = resp.headers_mut();
    // Revalidate every time: the files change with the binary, and the ETag
    // makes that a 304 when they did not.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if asset.is_page() {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Option<Response<Body>> {
        let segs = crate::http::segments(path);
        handle(
            &Method::GET,
            &segs,
            path.len() > 1 && path.ends_with('/'),
            None,
        )
        .map(|r| r.unwrap_or_else(ApiError::into_response))
    }

    fn header(r: &Response<Body>, name: header::HeaderName) -> &str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn root_and_room_paths_serve_the_page() {
        for path in ["/", "/demo", "/Team.Meeting_2-b"] {
            let r = get(path).expect("served");
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&r, header::CONTENT_TYPE), "text/html; charset=utf-8");
            assert_eq!(header(&r, header::CONTENT_SECURITY_POLICY), PAGE_CSP);
            assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache");
        }
    }

    #[test]
    fn signalling_routes_are_not_rooms() {
        for path in [
            "/conferences",
            "/colibri-ws",
            "/conferences/demo/endpoints",
            "/colibri-ws/a/b/c",
            "/a/b",
        ] {
            assert!(get(path).is_none(), "{path}");
        }
        assert_eq!(
            get("/_app").map(|r| r.status()),
            None,
            "the asset prefix alone is not a room"
        );
    }

    #[test]
    fn assets_have_types_and_no_csp() {
        let js = get("/_app/app.js").expect("served");
        assert_eq!(js.status(), StatusCode::OK);
        assert_eq!(
            header(&js, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(header(&js, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let css = get("/_app/style.css").expect("served");
        assert_eq!(
            header(&css, header::CONTENT_TYPE),
            "text/css; charset=utf-8"
        );
        let missing = get("/_app/nope.js").expect("answered");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let sneaky = get("/_app/..").expect("answered");
        assert_eq!(sneaky.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn etag_revalidates() {
        let first = get("/_app/app.js").expect("served");
        let etag = HeaderValue::from_str(header(&first, header::ETAG)).expect("etag");
        let segs = ["_app", "app.js"];
        let again = handle(&Method::GET, &segs, false, Some(&etag))
            .expect("served")
            .expect("ok");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let other = HeaderValue::from_static("\"0\"");
        let changed = handle(&Method::GET, &segs, false, Some(&other))
            .expect("served")
            .expect("ok");
        assert_eq!(changed.status(), StatusCode::OK);
    }

    #[test]
    fn trailing_slash_redirects_relative_to_the_room() {
        let r = get("/demo/").expect("answered");
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header(&r, header::LOCATION), "../demo");
    }

    #[test]
    fn other_methods_are_refused() {
        let r = handle(&Method::POST, &["demo"], false, None).expect("answered");
        assert_eq!(
            r.err().map(|e| e.status),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
    }

    #[test]
    fn the_page_stays_small() {
        let total = script_and_style_bytes();
        assert!(
            total <= SCRIPT_AND_STYLE_BUDGET,
            "the page's JS and CSS are {total} bytes, over the {SCRIPT_AND_STYLE_BUDGET}-byte budget"
        );
        assert!(total > 0);
    }
}
