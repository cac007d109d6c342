//! Join links: the room page of the bridge with a token in the fragment,
//! `http://127.0.0.1:9090/demo#jwt=<token>`. The fragment never reaches a
//! server (nor its logs); the page reads the token from it.

use std::net::SocketAddr;

use ringbridge_control::PublicConfig;

/// The address people open: `public.url` when set, else built from the
/// public listener's address (`listen`, or the bound address in dev mode),
/// with `127.0.0.1` (`[::1]`) standing for an unspecified `0.0.0.0` (`[::]`).
pub(crate) fn base_url(public: &PublicConfig, listen: SocketAddr) -> String {
    if let Some(url) = &public.url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = match listen {
        SocketAddr::V4(a) if a.ip().is_unspecified() => "127.0.0.1".to_owned(),
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => "[::1]".to_owned(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    format!("http://{host}:{}", listen.port())
}

/// `{base}/{room}#jwt={token}`, the room percent-encoded as a path segment.
pub(crate) fn room_link(base: &str, room: &str, jwt: &str) -> String {
    format!("{base}/{}#jwt={jwt}", encode_segment(room))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(url: Option<&str>) -> PublicConfig {
        PublicConfig {
            url: url.map(str::to_owned),
            ..PublicConfig::default()
        }
    }

    #[test]
    fn links_from_the_listener() {
        let p = public(None);
        let at = |s: &str| s.parse::<SocketAddr>().expect("address");
        assert_eq!(base_url(&p, at("0.0.0.0:9090")), "http://127.0.0.1:9090");
        assert_eq!(base_url(&p, at("10.1.2.3:80")), "http://10.1.2.3:80");
        assert_eq!(base_url(&p, at("[::]:9090")), "http://[::1]:9090");
        assert_eq!(
            base_url(&p, at("[2001:db8::1]:9090")),
            "http://[2001:db8::1]:9090"
        );
        assert_eq!(
            room_link("http://127.0.0.1:9090", "demo", "a.b.c"),
            "http://127.0.0.1:9090/demo#jwt=a.b.c"
        );
    }

    #[test]
    fn links_from_public_url() {
        let any = "0.0.0.0:9090".parse().expect("address");
        assert_eq!(
            base_url(&public(Some("https://meet.example.com/")), any),
            "https://meet.example.com"
        );
        let base = base_url(&public(Some("https://example.com/bridge")), any);
        assert_eq!(
            room_link(&base, "Team Room/1", "t"),
            "https://example.com/bridge/Team%20Room%2F1#jwt=t"
        );
    }
}
