//! The page's files, compiled into the binary from `control/web/`.

/// One file of the page.
#[derive(Debug)]
pub struct Asset {
    /// File name under `_app/` (`index.html` is served for `/` and `/{room}`).
    pub name: &'static str,
    /// `Content-Type` it is served with.
    pub content_type: &'static str,
    /// The file's bytes.
    pub body: &'static [u8],
}

impl Asset {
    /// Whether this is the HTML page (which gets the CSP).
    pub fn is_page(&self) -> bool {
        self.name == "index.html"
    }

    /// A strong ETag: FNV-1a 64 of the bytes, quoted.
    pub fn etag(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in self.body {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("\"{h:016x}\"")
    }

    fn is_script_or_style(&self) -> bool {
        self.name.ends_with(".js") || self.name.ends_with(".css")
    }
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the page; `index.html` first.
pub static ASSETS: [Asset; 7] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        name: "call.js",
        content_type: JS,
        body: include_bytes!("../../web/call.js"),
    },
    Asset {
        name: "colibri.js",
        content_type: JS,
        body: include_bytes!("../../web/colibri.js"),
    },
    Asset {
        name: "stats.js",
        content_type: JS,
        body: include_bytes!("../../web/stats.js"),
    },
    Asset {
        name: "token.js",
        content_type: JS,
        body: include_bytes!("../../web/token.js"),
    },
];

/// Issue 12: at most this many bytes of JavaScript and CSS, uncompressed.
pub const SCRIPT_AND_STYLE_BUDGET: usize = 150 * 1024;

/// The page's JavaScript and CSS, in bytes.
pub fn script_and_style_bytes() -> usize {
    ASSETS
        .iter()
        .filter(|a| a.is_script_or_style())
        .map(|a| a.body.len())
        .sum()
}

/// The HTML page.
pub(super) fn index() -> &'static Asset {
    &ASSETS[0]
}

/// A file by its name under `_app/` (the page itself is not one of them).
pub(super) fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().skip(1).find(|a| a.name == name)
}
