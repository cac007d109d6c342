//! A fake media plane, a started control plane around it, and small HTTP and
//! websocket clients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ringbridge_control::{
    AuthConfig, ConferenceId, ControlError, ControlSettings, EndpointId, EndpointPolicy,
    EventSender, JoinAnswer, JoinRequest, MediaError, MediaEvent, MediaPlane, MediaStats,
    MuteRequest, PrivateConfig, PublicConfig, ReceiverConstraintsUpdate, RefusalReason,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

pub const SECRET: &str = "integration-test-secret";
pub const SERVER_ID: &str = "test-bridge";
pub const DOMAIN: &str = "meet.example.com";
pub const ANSWER: &str =
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=ringbridge\r\nt=0 0\r\na=ice-lite\r\n";
pub const OFFER: &str = "v=0\r\no=- 42 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

/// Records commands and answers with a canned SDP (or a queued error).
#[derive(Default)]
pub struct FakeMedia {
    pub joins: Mutex<Vec<JoinRequest>>,
    /// The policy of each join, in order.
    pub policies: Mutex<Vec<EndpointPolicy>>,
    /// Mute commands, in order.
    pub mutes: Mutex<Vec<(ConferenceId, EndpointId, MuteRequest)>>,
    /// Refused sources, in order.
    pub refusals: Mutex<Vec<(EndpointId, String, RefusalReason)>>,
    pub leaves: Mutex<Vec<(ConferenceId, EndpointId)>>,
    /// Receiver constraints, in order.
    pub constraints: Mutex<Vec<(EndpointId, ReceiverConstraintsUpdate)>>,
    pub next_error: Mutex<Option<MediaError>>,
    /// Counters at `start`.
    pub base: Mutex<MediaStats>,
    /// Counters per second added since `start` (for rate tests).
    pub per_sec: Mutex<Option<(Instant, MediaStats)>>,
}

impl MediaPlane for FakeMedia {
    async fn join_with_policy(
        &self,
        req: JoinRequest,
        policy: EndpointPolicy,
    ) -> Result<JoinAnswer, MediaError> {
        let answer = self.join(req).await?;
        self.policies.lock().expect("lock").push(policy);
        Ok(answer)
    }

    async fn mute(
        &self,
        conference: ConferenceId,
        endpoint: EndpointId,
        mute: MuteRequest,
    ) -> Result<(), MediaError> {
        self.mutes
            .lock()
            .expect("lock")
            .push((conference, endpoint, mute));
        Ok(())
    }

    async fn refuse_source(
        &self,
        _conference: ConferenceId,
        endpoint: EndpointId,
        source: String,
        reason: RefusalReason,
    ) -> Result<(), MediaError> {
        self.refusals
            .lock()
            .expect("lock")
            .push((endpoint, source, reason));
        Ok(())
    }

    async fn set_receiver_constraints(
        &self,
        _conference: ConferenceId,
        endpoint: EndpointId,
        update: ReceiverConstraintsUpdate,
    ) -> Result<(), MediaError> {
        self.constraints
            .lock()
            .expect("lock")
            .push((endpoint, update));
        Ok(())
    }

    async fn join(&self, req: JoinRequest) -> Result<JoinAnswer, MediaError> {
        if let Some(e) = self.next_error.lock().expect("lock").take() {
            return Err(e);
        }
        self.joins.lock().expect("lock").push(req);
        Ok(JoinAnswer {
            answer_sdp: ANSWER.into(),
        })
    }

    async fn leave(
        &self,
        conference: ConferenceId,
        endpoint: EndpointId,
    ) -> Result<(), MediaError> {
        self.leaves
            .lock()
            .expect("lock")
            .push((conference, endpoint));
        Ok(())
    }

    fn stats(&self) -> MediaStats {
        let mut s = self.base.lock().expect("lock").clone();
        if let Some((start, rate)) = self.per_sec.lock().expect("lock").clone() {
            let ms = start.elapsed().as_millis() as u64;
            s.packets_received += rate.packets_received * ms / 1000;
            s.packets_sent += rate.packets_sent * ms / 1000;
            s.bytes_received += rate.bytes_received * ms / 1000;
            s.bytes_sent += rate.bytes_sent * ms / 1000;
        }
        s
    }
}

pub fn auth() -> AuthConfig {
    AuthConfig {
        app_secret: Some(SECRET.into()),
        domain: DOMAIN.into(),
        ..AuthConfig::default()
    }
}

/// A running control plane on 127.0.0.1 ports chosen by the OS.
pub struct Harness {
    pub public: SocketAddr,
    pub private: SocketAddr,
    pub media: Arc<FakeMedia>,
    pub events: EventSender,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ControlError>>>,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(Duration::from_secs(1)).await
    }

    pub async fn start_with(stats_interval: Duration) -> Harness {
        Self::start_auth(stats_interval, auth()).await
    }

    /// A harness with this `[auth]` configuration.
    pub async fn start_auth(stats_interval: Duration, auth: AuthConfig) -> Harness {
        Self::start_configured(stats_interval, auth, |_| {}).await
    }

    /// A harness whose settings `edit` changes (`[public]` limits, `[load]`).
    pub async fn start_configured(
        stats_interval: Duration,
        auth: AuthConfig,
        edit: impl FnOnce(&mut ControlSettings),
    ) -> Harness {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut settings = ControlSettings::new(
            SERVER_ID,
            PublicConfig {
                listen: loopback,
                ..PublicConfig::default()
            },
            PrivateConfig { listen: loopback },
            auth,
            SECRET.into(),
        );
        settings.stats_interval = stats_interval;
        edit(&mut settings);
        let media = Arc::new(FakeMedia::default());
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        let control = ringbridge_control::bind(settings, media.clone(), rx)
            .await
            .expect("bind");
        let (public, private) = (control.public_addr(), control.private_addr());
        assert_ne!(public.port(), 0);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(control.run(async {
            let _ = stopped.await;
        }));
        Harness {
            public,
            private,
            media,
            events,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks the control plane to stop and waits for `run` to return.
    pub async fn shutdown(mut self) -> Result<(), ControlError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("run returns after shutdown")
            .expect("run did not panic")
    }

    /// Joins `room` with a fresh owner token; returns (endpoint id, colibri path).
    pub async fn join(&self, room: &str) -> (String, String) {
        let resp = post_offer(self.public, room, &token_for(room), OFFER).await;
        assert_eq!(resp.status, 201, "join: {}", resp.text());
        let location = resp.header("location").expect("Location");
        let id = location.rsplit('/').next().expect("endpoint id").to_owned();
        let link = resp.header("link").expect("Link");
        let path = link
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .map(|(p, _)| p.to_owned())
            .expect("Link target");
        (id, path)
    }

    pub fn event(&self, event: MediaEvent) {
        self.events.send(event).expect("control plane reads events");
    }
}

/// Signs arbitrary claims with the test secret.
pub fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A valid claim set for `room`.
pub fn claims_for(room: &str) -> Value {
    json!({
        "iss": "ringbridge", "aud": "ringbridge", "sub": DOMAIN, "room": room,
        "exp": now() + 600, "nbf": now() - 5, "iat": now() - 5,
        "context": {"user": {"id": "u-1", "name": "Test User", "affiliation": "owner"}},
    })
}

pub fn token_for(room: &str) -> String {
    sign(&claims_for(room))
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// Asserts a success status (the body is shown when it is an error).
    pub fn assert_error_or(&self, status: u16) {
        assert_eq!(self.status, status, "body: {}", self.text());
    }

    /// Asserts a JSON error answer with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["error"], code, "body: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// One request over a fresh connection (`Connection: close`).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

pub async fn post_offer(addr: SocketAddr, room: &str, token: &str, offer: &str) -> HttpResponse {
    let auth = format!("Bearer {token}");
    request(
        addr,
        "POST",
        &format!("/conferences/{room}/endpoints"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/sdp"),
        ],
        offer.as_bytes(),
    )
    .await
}

pub type Ws = WebSocketStream<TcpStream>;

/// Opens a colibri websocket at `path`.
pub async fn ws_connect(
    addr: SocketAddr,
    path: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    tokio_tungstenite::client_async(format!("ws://{addr}{path}"), stream)
        .await
        .map(|(ws, _)| ws)
}

/// The next text frame as JSON (5 s at most).
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("no websocket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Close(_) => panic!("socket closed"),
            _ => continue,
        }
    }
}

/// Asserts that no text frame arrives within `wait`.
pub async fn assert_silent(ws: &mut Ws, wait: Duration) {
    if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(wait, ws.next()).await {
        panic!("unexpected frame: {t}");
    }
}

pub async fn send_json(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// Opens a socket and consumes the ServerHello.
pub async fn open(h: &Harness, path: &str) -> Ws {
    let mut ws = ws_connect(h.public, path).await.expect("websocket opens");
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["colibriClass"], "ServerHello");
    ws
}
