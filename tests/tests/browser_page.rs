//! The bridge's own room page (issue 12), in headless Chromium against the built
//! binary.
//!
//! `tests/browser/room.mjs` drives Debian's `/usr/bin/chromium` with
//! playwright-core (installed by `npm ci` in `tests/browser/`; `scripts/test.sh`
//! does both) and prints one JSON line; these tests start a bridge with the
//! [`Bridge`] helper, mint the tokens, run the script and assert on what the
//! pages showed. Screenshots land in `target/tmp/browser-page/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ringbridge_tests::{
    Bridge, TokenRequest, browser_dir, http_request, run_browser_script, test_token, workspace_root,
};
use serde_json::{Value, json};
/// How long one scenario may take, Chromium start included.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// One browser scenario at a time: each runs two or three Chromium pages that
/// encode and decode video, and the test machines have few cores.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `target/tmp/browser-page/<name>`, kept after the test for a look.
fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("browser-page")
        .join(name);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Runs `room.mjs` with `config` (one scenario at a time) and returns its JSON
/// result, which must say `ok`.
fn run_scenario(config: &Value, out: &Path) -> Value {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let json = run_browser_script("room.mjs", config, out, SCENARIO_TIMEOUT);
    assert!(
        json["ok"] == true,
        "the browser scenario failed: {}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    json
}

/// The page's base URL with a trailing slash.
fn base(bridge: &Bridge) -> String {
    format!("{}/", bridge.public_url())
}

fn named_owner(bridge: &Bridge, room: &str, name: &str) -> String {
    bridge.token_with(&TokenRequest {
        room: room.into(),
        owner: true,
        name: Some(name.into()),
        ..TokenRequest::default()
    })
}

#[test]
fn three_pages_show_each_other_decoding_a_stopped_camera_within_2s_and_a_shared_screen() {
    let bridge = Bridge::start("");
    let room = "demo";
    let names = ["Alice", "Bob", "Carol"];
    let tokens: Vec<String> = names
        .iter()
        .map(|n| named_owner(&bridge, room, n))
        .collect();
    let out = out_dir("room");
    let r = run_scenario(
        &json!({"scenario": "room", "base": base(&bridge), "room": room,
                "tokens": tokens, "outDir": out}),
        &out,
    );
    let pages = r["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 3);
    for (i, p) in pages.iter().enumerate() {
        let tiles = p["tiles"].as_array().expect("tiles");
        assert_eq!(tiles.len(), 2, "page {i}: two remote tiles: {p}");
        // Each tile carries the other participants' display names.
        let mut seen: Vec<&str> = tiles.iter().filter_map(|t| t["name"].as_str()).collect();
        seen.sort_unstable();
        let mut expected: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| *n)
            .collect();
        expected.sort_unstable();
        assert_eq!(seen, expected, "page {i}: tile names");
        let before = p["tilesBefore"].as_array().expect("before");
        for t in tiles {
            let frames = t["framesDecoded"].as_u64().unwrap_or(0);
            let earlier = before
                .iter()
                .find(|b| b["endpoint"] == t["endpoint"])
                .and_then(|b| b["framesDecoded"].as_u64())
                .unwrap_or(0);
            assert!(
                earlier > 0 && frames > earlier + 10,
                "page {i}: tile {} frames decoded {earlier} then {frames}",
                t["endpoint"]
            );
            assert!(
                t["width"].as_u64().unwrap_or(0) >= 160,
                "page {i}: decoded width {}",
                t["width"]
            );
        }
        for s in p["tileShots"].as_array().expect("shots") {
            let stddev = s["stddev"].as_f64().unwrap_or(0.0);
            let bright = s["brightShare"].as_f64().unwrap_or(0.0);
            assert!(
                stddev > 8.0 && bright > 0.2,
                "page {i}: tile {} looks blank on the screenshot: {s}",
                s["endpoint"]
            );
        }
        eprintln!(
            "page {i} ({}): first decoded remote frame {} ms after opening the link; screenshot {}",
            names[i], p["firstFrameMs"], p["screenshot"]
        );
    }
    let shown = r["mute"]["shownAfterMs"].as_array().expect("mute");
    assert_eq!(shown.len(), 2);
    for (i, ms) in shown.iter().enumerate() {
        let ms = ms
            .as_u64()
            .unwrap_or_else(|| panic!("page {} never showed the camera stopped", i + 1));
        assert!(ms <= 2000, "page {}: muted shown after {ms} ms", i + 1);
        eprintln!("page {}: camera stop shown after {ms} ms", i + 1);
    }
    // An owner's screen share reaches the others as a screen tile that decodes.
    let seen = r["share"]["seen"].as_array().expect("share");
    assert_eq!(seen.len(), 2);
    for s in seen {
        assert!(
            s["framesDecoded"].as_u64().unwrap_or(0) > 0,
            "the screen of page 1 decodes on {s}"
        );
    }
}

#[test]
fn members_see_a_refused_share_a_moderator_mute_a_removal_and_the_conference_ending() {
    let bridge = Bridge::start("");
    let room = "moderated";
    let owner = named_owner(&bridge, room, "Olivia");
    let member = test_token(
        room,
        "mallory",
        false,
        Some(json!({"screen-sharing": false})),
        None,
    );
    let other = test_token(room, "mike", false, None, None);
    let out = out_dir("member");
    let r = run_scenario(
        &json!({"scenario": "member", "base": base(&bridge), "room": room,
                "tokens": [owner], "memberToken": member, "otherMemberToken": other,
                "outDir": out}),
        &out,
    );
    let text = |k: &str| r[k].as_str().unwrap_or("").to_owned();
    assert!(
        text("refusal").contains("screen-sharing"),
        "the member's page shows the bridge's refusal: {r}"
    );
    assert_eq!(
        r["ownerSeesModeration"], true,
        "owners get moderator controls"
    );
    assert_eq!(
        r["memberSeesModeration"], false,
        "members get no moderator controls"
    );
    assert!(
        text("mutedNotice").contains("moderator muted your microphone"),
        "the muted member's page says so: {r}"
    );
    assert_eq!(
        r["ownerSeesOtherMuted"], true,
        "the muted member's tile shows it: {r}"
    );
    assert!(
        text("removedText").contains("moderator removed you"),
        "the removed member's page says so: {r}"
    );
    assert_eq!(r["ownerTilesAfterRemoval"]["remoteTiles"], 1, "{r}");
    assert!(text("ownerLeftText").contains("You left"), "{r}");
    assert!(
        text("endingNotice").contains("ends in 60 seconds"),
        "the remaining member is told the conference ends: {r}"
    );
    assert_eq!(r["otherTilesAfterLeave"]["remoteTiles"], 0, "{r}");
    let log = bridge.log_tail();
    assert!(
        !log.contains(&member) && !log.contains(&other),
        "tokens must not reach the bridge's log"
    );
}

/// The bridge's `/colibri/stats` as JSON.
fn colibri_stats(bridge: &Bridge) -> Value {
    let r = http_request(bridge.private_addr(), "GET", "/colibri/stats", &[], b"")
        .expect("GET /colibri/stats");
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).expect("stats JSON")
}

#[test]
fn the_talking_page_is_highlighted_as_dominant_speaker_on_the_others_within_5s() {
    let bridge = Bridge::start("");
    let room = "speakers";
    let tokens: Vec<String> = ["Alice", "Bob", "Carol"]
        .iter()
        .map(|n| named_owner(&bridge, room, n))
        .collect();
    let out = out_dir("speaker");
    let r = run_scenario(
        &json!({"scenario": "speaker", "base": base(&bridge), "room": room,
                "tokens": tokens, "outDir": out}),
        &out,
    );
    for turn in ["first", "second"] {
        let t = &r[turn];
        let speaker = t["endpoint"].as_str().expect("speaker endpoint");
        let mut muted: Vec<&str> = t["muted"]
            .as_array()
            .expect("muted")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        muted.sort_unstable();
        assert_eq!(
            muted,
            ["false", "true", "true"],
            "{turn} turn: the speaker unmuted, the two others muted, with the page's button: {t}"
        );
        // The speaker was not highlighted before it talked: the change is real.
        for b in t["before"].as_array().expect("before") {
            assert_ne!(b.as_str(), Some(speaker), "{turn} turn: {t}");
        }
        let shown = t["shownAfterMs"].as_array().expect("shownAfterMs");
        assert_eq!(shown.len(), 2, "{t}");
        for (i, ms) in shown.iter().enumerate() {
            let ms = ms.as_u64().unwrap_or_else(|| {
                panic!("{turn} turn: another page ({i}) never highlighted {speaker}: {r}")
            });
            // Typically 0.2-0.7 s (a decision every 300 ms once the voice makes
            // a fully active 100 ms block); the bound leaves room for a loaded
            // machine running three Chromium pages.
            assert!(
                ms <= 5000,
                "{turn} turn: highlighted after {ms} ms on another page ({i})"
            );
            eprintln!("{turn} turn: {speaker} highlighted on another page after {ms} ms");
        }
        // Only the speaker's tile, on each of the other pages.
        for h in t["highlighted"].as_array().expect("highlighted") {
            assert_eq!(h, &json!([speaker]), "{turn} turn: {t}");
        }
        assert_eq!(t["selfShown"], true, "the speaker's own tile too: {t}");
        assert_ne!(
            t["outline"].as_str().unwrap_or("rgba(0, 0, 0, 0)"),
            "rgba(0, 0, 0, 0)",
            "the highlight is visible: {t}"
        );
    }
    assert_ne!(r["first"]["endpoint"], r["second"]["endpoint"]);
    let stats = colibri_stats(&bridge);
    assert!(
        stats["total_dominant_speaker_changes"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{stats}"
    );
    eprintln!("screenshot {}", r["screenshot"]);
}

#[test]
fn the_pages_url_token_and_offer_helpers_pass_their_node_checks() {
    let out = Command::new("node")
        .arg(browser_dir().join("unit.mjs"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "unit.mjs printed no JSON ({e}):\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let checks = json["checks"].as_array().expect("checks");
    assert!(checks.len() >= 7, "{json}");
    for c in checks {
        assert_eq!(c["ok"], true, "{c}");
    }
    assert!(out.status.success());
}

/// The nginx snippet of `systemd/README.md`: the ```nginx block after its marker.
fn documented_nginx_snippet() -> String {
    let doc_path = workspace_root().join("systemd").join("README.md");
    let doc = fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", doc_path.display()));
    let after = doc
        .split_once("<!-- nginx snippet:")
        .map(|(_, rest)| rest)
        .expect("systemd/README.md has the nginx snippet marker");
    let block = after
        .split_once("```nginx\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| block)
        .expect("a ```nginx block follows the marker");
    block.to_owned()
}

/// Replaces `from` (which must occur) with `to`.
fn must_replace(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the documented nginx snippet no longer contains {from:?}"
    );
    text.replace(from, to)
}

/// nginx, killed (by its pid) on drop.
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_documented_nginx_snippet_serves_the_page_over_tls_at_the_root_and_under_a_prefix() {
    let nginx_bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx is missing: install Debian's nginx (scripts/test.sh does)");
    let bridge = Bridge::start("");
    let dir = out_dir("nginx");
    let (crt, key) = (dir.join("test.crt"), dir.join("test.key"));
    let openssl = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        openssl.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&openssl.stderr)
    );
    let port = ringbridge_tests::free_tcp_port();
    let snippet = documented_nginx_snippet();
    let snippet = must_replace(
        &snippet,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{port} ssl;"),
    );
    let snippet = must_replace(
        &snippet,
        "/etc/ssl/certs/meet.example.com.crt",
        &crt.display().to_string(),
    );
    let snippet = must_replace(
        &snippet,
        "/etc/ssl/private/meet.example.com.key",
        &key.display().to_string(),
    );
    let snippet = must_replace(
        &snippet,
        "127.0.0.1:9090",
        &bridge.public_addr().to_string(),
    );
    let snippet = must_replace(
        &snippet,
        "/var/log/nginx/ringbridge.access.log",
        &dir.join("access.log").display().to_string(),
    );
    fs::write(dir.join("ringbridge.conf"), &snippet).expect("write snippet");
    let d = dir.display();
    // A minimal nginx.conf around the snippet (as Debian's includes conf.d/*.conf).
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log {d}/other.log;\n  client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n  include {d}/ringbridge.conf;\n}}\n"
    );
    let conf = if nix_is_root() {
        format!("user root;\n{conf}")
    } else {
        conf
    };
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, conf).expect("write nginx.conf");
    let child = Command::new(nginx_bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            fs::File::create(dir.join("nginx.stderr")).expect("stderr file"),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nginx: {e}"));
    let _nginx = Nginx(child);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {addr}: {}",
            fs::read_to_string(dir.join("nginx.stderr")).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let room = "tls";
    let tokens = vec![
        named_owner(&bridge, room, "Dana"),
        named_owner(&bridge, room, "Eve"),
    ];
    let r = run_scenario(
        &json!({"scenario": "room", "base": format!("https://127.0.0.1:{port}/"),
                "bases": [format!("https://127.0.0.1:{port}/"), format!("https://127.0.0.1:{port}/video/")],
                "room": room, "tokens": tokens, "outDir": dir, "insecure": true}),
        &dir,
    );
    for p in r["pages"].as_array().expect("pages") {
        let tiles = p["tiles"].as_array().expect("tiles");
        assert_eq!(tiles.len(), 1, "{p}");
        assert!(tiles[0]["framesDecoded"].as_u64().unwrap_or(0) > 10, "{p}");
        eprintln!(
            "through nginx: {} first decoded remote frame after {} ms",
            p["label"], p["firstFrameMs"]
        );
    }
    let log = fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    assert!(
        log.contains("GET /colibri-ws/") && log.contains(" 101 "),
        "the colibri websocket went through nginx:\n{log}"
    );
    assert!(log.contains("POST /conferences/tls/endpoints"), "{log}");
    assert!(
        !log.contains("pwd="),
        "nginx must not log the colibri pwd:\n{log}"
    );
    // One page came in under the /video/ prefix, all its URLs relative to it.
    for path in [
        "GET /video/tls ",
        "GET /video/_app/app.js ",
        "POST /video/conferences/tls/endpoints ",
        "GET /video/colibri-ws/",
    ] {
        assert!(log.contains(path), "{path} went through nginx:\n{log}");
    }
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn header<'a>(r: &'a ringbridge_tests::HttpResponse, name: &str) -> &'a str {
    r.header(name).unwrap_or("")
}

#[test]
fn the_page_is_served_small_with_a_csp_and_cors_follows_allowed_origins() {
    let bridge = Bridge::start("[public]\nallowed_origins = [\"https://app.example\"]\n");
    let addr = bridge.public_addr();
    let mut script_and_style = 0;
    for path in ["/", "/demo", "/room-2"] {
        let r = http_request(addr, "GET", path, &[], b"").expect("GET");
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        let csp = header(&r, "content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
            "{csp}"
        );
        assert!(r.header("access-control-allow-origin").is_none());
    }
    // Every file the page loads, found by following its references, relative.
    let index = http_request(addr, "GET", "/demo", &[], b"").expect("GET");
    let html = String::from_utf8_lossy(&index.body).into_owned();
    let mut queue: Vec<String> = refs(&html, &["src=\"", "href=\""]);
    let mut seen = Vec::new();
    while let Some(file) = queue.pop() {
        if seen.contains(&file) || file.starts_with("data:") {
            continue;
        }
        assert!(
            !file.starts_with('/') && !file.contains("://"),
            "{file} must be relative"
        );
        let path = format!("/{}", file.trim_start_matches("./"));
        let r = http_request(addr, "GET", &path, &[], b"").expect("GET");
        assert_eq!(r.status, 200, "{path}");
        let ct = header(&r, "content-type");
        assert!(
            ct.starts_with("text/javascript") || ct.starts_with("text/css"),
            "{path}: {ct}"
        );
        assert_eq!(header(&r, "cache-control"), "no-cache");
        script_and_style += r.body.len();
        let text = String::from_utf8_lossy(&r.body).into_owned();
        for m in refs(&text, &["from './", "import('./"]) {
            queue.push(format!("_app/{m}"));
        }
        seen.push(file);
    }
    assert!(seen.len() >= 3, "files found: {seen:?}");
    assert!(
        script_and_style <= 150 * 1024,
        "JS + CSS is {script_and_style} bytes"
    );
    eprintln!("page files: {seen:?}, {script_and_style} bytes of JS and CSS");

    // The signalling paths answer CORS for the allowed origin only.
    let pre = http_request(
        addr,
        "OPTIONS",
        "/conferences/demo/endpoints",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        b"",
    )
    .expect("OPTIONS");
    assert_eq!(pre.status, 204);
    assert_eq!(
        header(&pre, "access-control-allow-origin"),
        "https://app.example"
    );
    assert!(header(&pre, "access-control-allow-headers").contains("Authorization"));
    let token = bridge.token("demo");
    let auth = format!("Bearer {token}");
    let post = http_request(
        addr,
        "POST",
        "/conferences/demo/endpoints",
        &[
            ("Origin", "https://app.example"),
            ("Authorization", &auth),
            ("Content-Type", "application/sdp"),
        ],
        b"v=0\r\n",
    )
    .expect("POST");
    assert_eq!(
        header(&post, "access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(
        header(&post, "access-control-expose-headers"),
        "Location, Link"
    );
    let other = http_request(
        addr,
        "OPTIONS",
        "/conferences/demo/endpoints",
        &[("Origin", "https://evil.example")],
        b"",
    )
    .expect("OPTIONS");
    assert_eq!(other.status, 403);
    assert!(other.header("access-control-allow-origin").is_none());
}

/// The targets of `prefix...` references (up to the next quote) in `text`.
fn refs(text: &str, prefixes: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for p in prefixes {
        for (i, _) in text.match_indices(p) {
            let rest = &text[i + p.len()..];
            if let Some(end) = rest.find(['"', '\'']) {
                out.push(rest[..end].to_owned());
            }
        }
    }
    out
}
