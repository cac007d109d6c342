//! Janus's HTTP API (the REST transport), blocking, for signalling only.
//!
//! One [`Session`] holds one Janus session with one `janus.plugin.videoroom` handle.
//! Synchronous plugin requests (`create`) answer in the POST's response; asynchronous
//! ones (`join`, `publish`, `start`) answer `ack` and deliver their event, with any
//! JSEP, on the session's long-poll `GET /janus/<session>`. Events that arrive for
//! another transaction are kept until asked for.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distr::Alphanumeric;
use ringbridge_devsupport::http_request_within;
use serde_json::{Value, json};

use super::JanusError;

/// Longest a single HTTP exchange may take (Janus holds a long poll for 30 s at most).
const HTTP_TIMEOUT: Duration = Duration::from_secs(35);

/// One Janus session with one VideoRoom plugin handle.
#[derive(Debug)]
pub struct Session {
    addr: SocketAddr,
    session_id: u64,
    handle_id: u64,
    pending: VecDeque<Value>,
}

/// A plugin event: the plugin's `data` and the JSEP, if any.
#[derive(Debug, Clone)]
pub struct PluginEvent {
    /// `plugindata.data`.
    pub data: Value,
    /// `jsep` (`type` and `sdp`).
    pub jsep: Option<Value>,
}

impl PluginEvent {
    /// The JSEP SDP of the given type (`offer` / `answer`).
    pub fn sdp(&self, kind: &str) -> Result<&str, JanusError> {
        let jsep = self
            .jsep
            .as_ref()
            .ok_or_else(|| JanusError::Protocol(format!("event without jsep: {}", self.data)))?;
        if jsep.get("type").and_then(Value::as_str) != Some(kind) {
            return Err(JanusError::Protocol(format!(
                "expected a JSEP {kind}: {jsep}"
            )));
        }
        jsep.get("sdp")
            .and_then(Value::as_str)
            .ok_or_else(|| JanusError::Protocol(format!("JSEP without sdp: {jsep}")))
    }
}

impl Session {
    /// Creates a session on the Janus at `addr` and attaches the VideoRoom plugin.
    pub fn open(addr: SocketAddr) -> Result<Self, JanusError> {
        let created = post(addr, "/janus", &json!({"janus": "create"}))?;
        let session_id = success_id(&created)?;
        let attached = post(
            addr,
            &format!("/janus/{session_id}"),
            &json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
        )?;
        let handle_id = success_id(&attached)?;
        Ok(Self {
            addr,
            session_id,
            handle_id,
            pending: VecDeque::new(),
        })
    }

    /// The Janus session id.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The plugin handle id.
    pub fn handle_id(&self) -> u64 {
        self.handle_id
    }

    /// Sends a synchronous plugin request and returns `plugindata.data`. A plugin-level
    /// error (`{"error_code", "error"}`) becomes [`JanusError::Plugin`].
    pub fn request(&mut self, body: Value) -> Result<Value, JanusError> {
        let reply = self.message(body, None)?;
        match reply.get("janus").and_then(Value::as_str) {
            Some("success") => plugin_data(&reply),
            _ => Err(JanusError::Protocol(format!(
                "expected a synchronous success: {reply}"
            ))),
        }
    }

    /// Sends an asynchronous plugin request (optionally with a JSEP) and waits up to
    /// `timeout` for its event.
    pub fn request_async(
        &mut self,
        body: Value,
        jsep: Option<Value>,
        timeout: Duration,
    ) -> Result<PluginEvent, JanusError> {
        let tx = transaction();
        let what = body.get("request").cloned().unwrap_or_default();
        let reply = self.message_tx(body, jsep, &tx)?;
        match reply.get("janus").and_then(Value::as_str) {
            Some("ack") => {}
            // Some requests answer synchronously even when they may not; take it.
            Some("success") | Some("event") => return event_of(&reply),
            _ => return Err(JanusError::Protocol(format!("unexpected reply: {reply}"))),
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.pending.iter().position(|ev| {
                ev.get("transaction").and_then(Value::as_str) == Some(tx.as_str())
                    && ev.get("janus").and_then(Value::as_str) == Some("event")
            }) {
                let ev = self.pending.remove(pos).unwrap_or_default();
                return event_of(&ev);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(JanusError::Timeout(format!(
                    "no event for request {what} within {timeout:?}"
                )));
            }
            self.poll_events()?;
        }
    }

    /// Waits up to `timeout` for a core event of type `kind` (`webrtcup`, `media`,
    /// `hangup`) on this handle.
    pub fn wait_core_event(&mut self, kind: &str, timeout: Duration) -> Result<Value, JanusError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self
                .pending
                .iter()
                .position(|ev| ev.get("janus").and_then(Value::as_str) == Some(kind))
            {
                return Ok(self.pending.remove(pos).unwrap_or_default());
            }
            if Instant::now() >= deadline {
                return Err(JanusError::Timeout(format!(
                    "no `{kind}` event within {timeout:?}"
                )));
            }
            self.poll_events()?;
        }
    }

    /// Keeps the session alive (only needed when Janus's session timeout is on; the
    /// generated configuration turns it off).
    pub fn keepalive(&mut self) -> Result<(), JanusError> {
        let reply = post(
            self.addr,
            &format!("/janus/{}", self.session_id),
            &json!({"janus": "keepalive"}),
        )?;
        check_janus_error(&reply)
    }

    /// Destroys the session (and the handle, hanging up its PeerConnection).
    pub fn destroy(self) -> Result<(), JanusError> {
        let reply = post(
            self.addr,
            &format!("/janus/{}", self.session_id),
            &json!({"janus": "destroy"}),
        )?;
        check_janus_error(&reply)
    }

    fn message(&mut self, body: Value, jsep: Option<Value>) -> Result<Value, JanusError> {
        self.message_tx(body, jsep, &transaction())
    }

    fn message_tx(
        &mut self,
        body: Value,
        jsep: Option<Value>,
        tx: &str,
    ) -> Result<Value, JanusError> {
        let mut msg = json!({"janus": "message", "transaction": tx, "body": body});
        if let (Some(jsep), Some(obj)) = (jsep, msg.as_object_mut()) {
            obj.insert("jsep".into(), jsep);
        }
        let reply = post(
            self.addr,
            &format!("/janus/{}/{}", self.session_id, self.handle_id),
            &msg,
        )?;
        check_janus_error(&reply)?;
        Ok(reply)
    }

    /// One long poll: queues whatever events Janus has (or returns after its 30 s
    /// keepalive).
    fn poll_events(&mut self) -> Result<(), JanusError> {
        let (status, body) = http(
            self.addr,
            "GET",
            &format!("/janus/{}?maxev=16&rid={}", self.session_id, transaction()),
            None,
        )?;
        if status != 200 {
            return Err(JanusError::Protocol(format!(
                "long poll answered HTTP {status}: {body}"
            )));
        }
        let value: Value = serde_json::from_str(&body)
            .map_err(|e| JanusError::Protocol(format!("long poll body is not JSON ({e})")))?;
        let events = match value {
            Value::Array(events) => events,
            other => vec![other],
        };
        for ev in events {
            if ev.get("janus").and_then(Value::as_str) == Some("keepalive") {
                continue;
            }
            self.pending.push_back(ev);
        }
        Ok(())
    }
}

fn transaction() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(12)
        .map(char::from)
        .collect()
}

fn success_id(reply: &Value) -> Result<u64, JanusError> {
    check_janus_error(reply)?;
    reply
        .get("data")
        .and_then(|d| d.get("id"))
        .and_then(Value::as_u64)
        .ok_or_else(|| JanusError::Protocol(format!("no data.id in {reply}")))
}

fn check_janus_error(reply: &Value) -> Result<(), JanusError> {
    if reply.get("janus").and_then(Value::as_str) == Some("error") {
        let err = reply.get("error");
        return Err(JanusError::Plugin {
            code: err
                .and_then(|e| e.get("code"))
                .and_then(Value::as_i64)
                .unwrap_or(0),
            reason: err
                .and_then(|e| e.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
        });
    }
    Ok(())
}

fn plugin_data(reply: &Value) -> Result<Value, JanusError> {
    let data = reply
        .get("plugindata")
        .and_then(|p| p.get("data"))
        .cloned()
        .ok_or_else(|| JanusError::Protocol(format!("no plugindata in {reply}")))?;
    if let Some(code) = data.get("error_code").and_then(Value::as_i64) {
        return Err(JanusError::Plugin {
            code,
            reason: data
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
        });
    }
    Ok(data)
}

fn event_of(ev: &Value) -> Result<PluginEvent, JanusError> {
    Ok(PluginEvent {
        data: plugin_data(ev)?,
        jsep: ev.get("jsep").cloned(),
    })
}

/// POSTs a Janus API request (a transaction is added) and parses the JSON reply.
fn post(addr: SocketAddr, path: &str, body: &Value) -> Result<Value, JanusError> {
    let mut body = body.clone();
    if let Some(obj) = body.as_object_mut()
        && !obj.contains_key("transaction")
    {
        obj.insert("transaction".into(), Value::String(transaction()));
    }
    let text = body.to_string();
    let (status, reply) = http(addr, "POST", path, Some(&text))?;
    if status != 200 {
        return Err(JanusError::Protocol(format!(
            "POST {path} answered HTTP {status}: {reply}"
        )));
    }
    serde_json::from_str(&reply)
        .map_err(|e| JanusError::Protocol(format!("POST {path}: reply is not JSON ({e})")))
}

/// A minimal HTTP/1.1 exchange (`Connection: close`, JSON body): returns the status
/// and the body as text. The read timeout is long enough for a Janus long poll.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), JanusError> {
    let err = |e: String| JanusError::Http(format!("{method} http://{addr}{path}: {e}"));
    let resp = http_request_within(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.unwrap_or("").as_bytes(),
        HTTP_TIMEOUT,
    )
    .map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8(resp.body).map_err(|_| err("body is not UTF-8".into()))?;
    Ok((resp.status, text))
}
