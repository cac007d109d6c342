//! The control plane's registry of live endpoints: who is in which room, their
//! colibri `pwd`, and the sender half of their websocket.
//!
//! All state sits behind one short-held mutex; nothing awaits while holding it.
//! Messages to a websocket go through a bounded queue: a client that stops reading
//! loses its socket rather than growing the bridge's memory.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::colibri;
use crate::media::{ConferenceId, EndpointId, MappedSource, MediaEvent};

/// Frames queued for one websocket before the client is considered stuck.
const SOCKET_QUEUE: usize = 256;

/// Why a colibri websocket request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketRefusal {
    /// No such endpoint in this room.
    NotFound,
    /// The `pwd` does not match.
    BadPwd,
}

struct Socket {
    id: u64,
    tx: mpsc::Sender<String>,
}

struct Endpoint {
    pwd: String,
    display_name: Option<String>,
    /// `context.user.id` of the token the endpoint joined with.
    user_id: Option<String>,
    socket: Option<Socket>,
    /// Media (ICE + DTLS) is up.
    media_connected: bool,
    /// Latest maps, kept so that a socket opened later still gets them.
    video_map: Option<Vec<MappedSource>>,
    audio_map: Option<Vec<MappedSource>>,
}

impl Endpoint {
    /// Queues `text`; a full queue drops the socket (the client stopped reading).
    fn send(&mut self, id: &EndpointId, text: String) -> bool {
        let Some(socket) = &self.socket else {
            return false;
        };
        match socket.tx.try_send(text) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(endpoint = %id, "colibri websocket not reading; closing it");
                self.socket = None;
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.socket = None;
                false
            }
        }
    }
}

type Rooms = HashMap<ConferenceId, HashMap<EndpointId, Endpoint>>;

/// Live endpoints by room.
#[derive(Default)]
pub(crate) struct Registry {
    rooms: Mutex<Rooms>,
    next_socket: std::sync::atomic::AtomicU64,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Rooms> {
        // A panic elsewhere must not take signalling down with it.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a new endpoint to `conference` with a fresh random id and `pwd`.
    pub(crate) fn reserve(
        &self,
        conference: &ConferenceId,
        display_name: Option<String>,
        user_id: Option<String>,
    ) -> (EndpointId, String) {
        let mut rooms = self.lock();
        let room = rooms.entry(conference.clone()).or_default();
        let id = loop {
            let id = EndpointId(format!("{:08x}", rand::random::<u32>()));
            if !room.contains_key(&id) {
                break id;
            }
        };
        let pwd = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
        room.insert(
            id.clone(),
            Endpoint {
                pwd: pwd.clone(),
                display_name,
                user_id,
                socket: None,
                media_connected: false,
                video_map: None,
                audio_map: None,
            },
        );
        (id, pwd)
    }

    /// The `context.user.id` the endpoint joined with: `None` if the endpoint does
    /// not exist, `Some(None)` if its token had no user id.
    pub(crate) fn user_id(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
    ) -> Option<Option<String>> {
        Some(self.lock().get(conference)?.get(endpoint)?.user_id.clone())
    }

    /// The display name the endpoint joined with.
    pub(crate) fn display_name(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
    ) -> Option<String> {
        self.lock()
            .get(conference)?
            .get(endpoint)?
            .display_name
            .clone()
    }

    /// Removes an endpoint (closing its websocket). With `notify`, tells the
    /// other endpoints of the room that it is gone. Returns whether it existed.
    pub(crate) fn remove(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        notify: bool,
    ) -> bool {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(conference) else {
            return false;
        };
        // Dropping the entry drops the socket's sender, which closes the socket.
        let existed = room.remove(endpoint).is_some();
        if existed && notify {
            let text = colibri::connectivity(endpoint, false);
            for (id, other) in room.iter_mut() {
                other.send(id, text.clone());
            }
        }
        if room.is_empty() {
            rooms.remove(conference);
        }
        existed
    }

    /// Checks a websocket request's `pwd` in constant time.
    pub(crate) fn check_pwd(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        pwd: Option<&str>,
    ) -> Result<(), SocketRefusal> {
        let rooms = self.lock();
        let entry = rooms
            .get(conference)
            .and_then(|r| r.get(endpoint))
            .ok_or(SocketRefusal::NotFound)?;
        let given = pwd.unwrap_or("").as_bytes();
        if bool::from(entry.pwd.as_bytes().ct_eq(given)) {
            Ok(())
        } else {
            Err(SocketRefusal::BadPwd)
        }
    }

    /// Attaches a freshly opened websocket (replacing any older one) and queues
    /// what it must see first: `ServerHello`, the latest source maps, and which
    /// other endpoints already have media.
    pub(crate) fn attach_socket(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
    ) -> Option<(u64, mpsc::Receiver<String>)> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(conference)?;
        let connected_others: Vec<EndpointId> = room
            .iter()
            .filter(|(id, e)| *id != endpoint && e.media_connected)
            .map(|(id, _)| id.clone())
            .collect();
        let entry = room.get_mut(endpoint)?;
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let id = self
            .next_socket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        entry.socket = Some(Socket { id, tx });
        let mut first = vec![colibri::server_hello()];
        if let Some(map) = &entry.video_map {
            first.push(colibri::sources_map(true, map));
        }
        if let Some(map) = &entry.audio_map {
            first.push(colibri::sources_map(false, map));
        }
        first.extend(
            connected_others
                .iter()
                .map(|o| colibri::connectivity(o, true)),
        );
        for text in first {
            entry.send(endpoint, text);
        }
        Some((id, rx))
    }

    /// Forgets a websocket that closed, unless a newer one replaced it.
    pub(crate) fn detach_socket(&self, conference: &ConferenceId, endpoint: &EndpointId, id: u64) {
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(conference).and_then(|r| r.get_mut(endpoint))
            && entry.socket.as_ref().is_some_and(|s| s.id == id)
        {
            entry.socket = None;
        }
    }

    /// Queues `text` for one endpoint's websocket. Returns `false` if it has none.
    pub(crate) fn send_to(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        text: String,
    ) -> bool {
        let mut rooms = self.lock();
        match rooms.get_mut(conference).and_then(|r| r.get_mut(endpoint)) {
            Some(entry) => entry.send(endpoint, text),
            None => false,
        }
    }

    /// Queues `text` for every websocket of the room except `except`'s.
    pub(crate) fn broadcast(
        &self,
        conference: &ConferenceId,
        except: Option<&EndpointId>,
        text: &str,
    ) {
        let mut rooms = self.lock();
        if let Some(room) = rooms.get_mut(conference) {
            for (id, entry) in room.iter_mut() {
                if Some(id) != except {
                    entry.send(id, text.to_owned());
                }
            }
        }
    }

    /// Closes every websocket (the bridge is stopping).
    pub(crate) fn close_all_sockets(&self) {
        for room in self.lock().values_mut() {
            for entry in room.values_mut() {
                entry.socket = None;
            }
        }
    }

    /// Applies one event from the media plane.
    pub(crate) fn handle_event(&self, event: MediaEvent) {
        match event {
            MediaEvent::EndpointConnected {
                conference,
                endpoint,
            } => {
                {
                    let mut rooms = self.lock();
                    match rooms
                        .get_mut(&conference)
                        .and_then(|r| r.get_mut(&endpoint))
                    {
                        Some(entry) => entry.media_connected = true,
                        None => {
                            debug!(%conference, %endpoint, "connected event for an unknown endpoint");
                            return;
                        }
                    }
                }
                self.broadcast(
                    &conference,
                    Some(&endpoint),
                    &colibri::connectivity(&endpoint, true),
                );
            }
            MediaEvent::EndpointExpired {
                conference,
                endpoint,
                reason,
            } => {
                if self.remove(&conference, &endpoint, true) {
                    tracing::info!(%conference, %endpoint, reason, "endpoint expired");
                }
            }
            MediaEvent::SourcesMapChanged {
                conference,
                receiver,
                sources,
            } => self.set_maps(&conference, &receiver, sources),
        }
    }

    /// Stores a receiver's maps and sends those that changed.
    fn set_maps(
        &self,
        conference: &ConferenceId,
        receiver: &EndpointId,
        sources: Vec<MappedSource>,
    ) {
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(conference).and_then(|r| r.get_mut(receiver)) else {
            debug!(%conference, endpoint = %receiver, "sources map for an unknown endpoint");
            return;
        };
        let (video, audio): (Vec<_>, Vec<_>) = sources.into_iter().partition(|s| s.video);
        if entry.video_map.as_ref() != Some(&video) {
            let text = colibri::sources_map(true, &video);
            entry.video_map = Some(video);
            entry.send(receiver, text);
        }
        if entry.audio_map.as_ref() != Some(&audio) {
            let text = colibri::sources_map(false, &audio);
            entry.audio_map = Some(audio);
            entry.send(receiver, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> ConferenceId {
        ConferenceId("r".into())
    }

    #[test]
    fn ids_and_pwds_are_fresh_and_well_formed() {
        let reg = Registry::default();
        let (a, pa) = reg.reserve(&conf(), None, None);
        let (b, pb) = reg.reserve(&conf(), Some("B".into()), None);
        assert_ne!(a, b);
        assert_ne!(pa, pb);
        for id in [&a, &b] {
            assert_eq!(id.0.len(), 8);
            assert!(id.0.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        }
        // 24 random bytes = 192 bits, URL-safe.
        assert_eq!(pa.len(), 32);
        assert!(
            pa.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(reg.display_name(&conf(), &b).as_deref(), Some("B"));
    }

    #[test]
    fn pwd_check() {
        let reg = Registry::default();
        let (a, pa) = reg.reserve(&conf(), None, None);
        assert_eq!(reg.check_pwd(&conf(), &a, Some(&pa)), Ok(()));
        assert_eq!(
            reg.check_pwd(&conf(), &a, Some("wrong")),
            Err(SocketRefusal::BadPwd)
        );
        assert_eq!(reg.check_pwd(&conf(), &a, None), Err(SocketRefusal::BadPwd));
        assert_eq!(
            reg.check_pwd(&conf(), &EndpointId("nope".into()), Some(&pa)),
            Err(SocketRefusal::NotFound)
        );
    }

    #[test]
    fn removing_closes_socket_and_notifies_others() {
        let reg = Registry::default();
        let (a, _) = reg.reserve(&conf(), None, None);
        let (b, _) = reg.reserve(&conf(), None, None);
        let (_, mut rx_a) = reg.attach_socket(&conf(), &a).expect("attached");
        let (_, mut rx_b) = reg.attach_socket(&conf(), &b).expect("attached");
        assert_eq!(rx_a.try_recv().ok(), Some(colibri::server_hello()));
        assert_eq!(rx_b.try_recv().ok(), Some(colibri::server_hello()));
        assert!(reg.remove(&conf(), &b, true));
        assert!(!reg.remove(&conf(), &b, true));
        assert_eq!(rx_a.try_recv().ok(), Some(colibri::connectivity(&b, false)));
        assert_eq!(
            rx_b.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
    }

    #[test]
    fn stuck_socket_is_dropped() {
        let reg = Registry::default();
        let (a, _) = reg.reserve(&conf(), None, None);
        let (_, mut rx) = reg.attach_socket(&conf(), &a).expect("attached");
        for i in 0..SOCKET_QUEUE * 2 {
            reg.send_to(&conf(), &a, format!("{i}"));
        }
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, SOCKET_QUEUE);
        assert_eq!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
    }
}
