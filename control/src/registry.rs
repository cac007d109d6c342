//! The control plane's registry of live endpoints: who is in which room, their
//! colibri `pwd`, and the sender half of their websocket.
//!
//! All state sits behind one short-held mutex; nothing awaits while holding it.
//! Messages to a websocket go through a bounded queue: a client that stops reading
//! loses its socket rather than growing the bridge's memory.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::colibri;
use crate::media::{ConferenceId, EndpointId, MappedSource, MediaEvent};

/// Notices kept for an endpoint whose websocket is not open yet.
const PENDING_NOTICES: usize = 32;

/// Most latest-allocation messages kept per endpoint for a socket opened later
/// (its `ForwardedSources` and one `SenderSourceConstraints` per own source).
const LATEST_KEPT: usize = 16;

/// Frames queued for one websocket before the client is considered stuck.
const SOCKET_QUEUE: usize = 256;

/// Buckets of jitsi-videobridge's `conference_sizes`: index `i` counts the
/// conferences with `i` endpoints, the last one those with 21 or more.
pub(crate) const CONFERENCE_SIZE_BUCKETS: usize = 22;

/// Conferences that ended and endpoints that joined, since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Conferences whose last endpoint left (jvb's `total_conferences_completed`).
    pub(crate) conferences_completed: u64,
    /// Sum of the lifetimes of those conferences, from first join to last
    /// leave, in whole seconds (jvb's `total_conference_seconds`).
    pub(crate) conference_seconds: u64,
    /// Endpoints admitted (jvb's `total_participants`).
    pub(crate) participants: u64,
}

/// When each live conference opened, and [`Totals`].
#[derive(Default)]
struct History {
    opened: HashMap<ConferenceId, Instant>,
    lifetimes: Duration,
    totals: Totals,
}

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

/// Who an endpoint is, from the token it joined with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Membership {
    /// `context.user.name`.
    pub(crate) display_name: Option<String>,
    /// `context.user.id`.
    pub(crate) user_id: Option<String>,
    /// The token made its holder an owner.
    pub(crate) owner: bool,
    /// The token's `jti`, if any.
    pub(crate) jti: Option<String>,
    /// The `screen-sharing` feature.
    pub(crate) screen_sharing: bool,
    /// The token's `exp`.
    pub(crate) expires_at: u64,
}

/// Why [`Registry::admit`] refused an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdmitRefusal {
    /// The room has no endpoint and the caller is a member, not an owner.
    OwnerRequired,
    /// `auth.single_use_jti`: the token's `jti` already has a live endpoint.
    JtiInUse,
    /// `load.max_endpoints_per_conference`: the room is full.
    ConferenceFull,
    /// `load.max_conferences`: the bridge hosts as many conferences as it may.
    TooManyConferences,
}

/// Caps on what [`Registry::admit`] lets in (`[load]`); 0 is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Caps {
    /// `load.max_conferences`.
    pub(crate) max_conferences: usize,
    /// `load.max_endpoints_per_conference`.
    pub(crate) max_endpoints_per_conference: usize,
}

/// What removing an endpoint did to its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removed {
    /// Nothing to do.
    Done,
    /// The last owner left and others remain: the owner grace period with this
    /// generation has started (see [`Registry::end_grace`]).
    LastOwnerLeft(u64),
}

struct Endpoint {
    pwd: String,
    /// Owner, jti, features and token expiry.
    member: Membership,
    /// Bumped when a fresh token arrives, so older expiry timers do nothing.
    expiry_gen: u64,
    /// Notices for a websocket that is not open yet.
    pending: Vec<String>,
    display_name: Option<String>,
    /// `context.user.id` of the token the endpoint joined with.
    user_id: Option<String>,
    socket: Option<Socket>,
    /// Media (ICE + DTLS) is up.
    media_connected: bool,
    /// Latest maps, kept so that a socket opened later still gets them.
    video_map: Option<Vec<MappedSource>>,
    audio_map: Option<Vec<MappedSource>>,
    /// Latest allocation messages by key (`ForwardedSources`, and
    /// `SenderSourceConstraints` per source), kept for a socket opened later.
    latest: Vec<(String, String)>,
}

impl Endpoint {
    /// Queues `text` on the socket, or keeps it (bounded) for when one opens.
    fn send_or_keep(&mut self, id: &EndpointId, text: String) {
        if self.socket.is_some() {
            self.send(id, text);
        } else if self.pending.len() < PENDING_NOTICES {
            self.pending.push(text);
        }
    }

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

/// The display name of endpoint `owner` of `room`, for the source maps.
fn owner_name(room: &HashMap<EndpointId, Endpoint>, owner: &str) -> Option<String> {
    room.get(&EndpointId(owner.to_owned()))?
        .display_name
        .clone()
}

/// Live endpoints by room.
#[derive(Default)]
pub(crate) struct Registry {
    rooms: Mutex<Rooms>,
    next_socket: std::sync::atomic::AtomicU64,
    /// Rooms in their owner grace period, with the period's generation. Locked
    /// only while `rooms` is held (lock order: rooms, then grace).
    grace: Mutex<HashMap<ConferenceId, u64>>,
    next_gen: std::sync::atomic::AtomicU64,
    /// Conference lifetimes. Locked only while `rooms` is held (lock order:
    /// rooms, grace, history).
    history: Mutex<History>,
    caps: Caps,
    /// Each conference's latest `DominantSpeakerEndpointChangeEvent`, for
    /// sockets that open later. Locked only while `rooms` is held (lock order:
    /// rooms, then this; never with grace or history).
    speakers: Mutex<HashMap<ConferenceId, String>>,
}

impl Registry {
    /// An empty registry that admits within `caps`.
    pub(crate) fn with_caps(caps: Caps) -> Registry {
        Registry {
            caps,
            ..Registry::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Rooms> {
        // A panic elsewhere must not take signalling down with it.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_grace(&self) -> MutexGuard<'_, HashMap<ConferenceId, u64>> {
        self.grace.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_speakers(&self) -> MutexGuard<'_, HashMap<ConferenceId, String>> {
        self.speakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `conference`'s room was just removed (its last endpoint
    /// left). Call with `rooms` held.
    fn conference_ended(&self, conference: &ConferenceId) {
        {
            let mut history = self.lock_history();
            if let Some(opened) = history.opened.remove(conference) {
                history.lifetimes += opened.elapsed();
                history.totals.conferences_completed += 1;
                history.totals.conference_seconds = history.lifetimes.as_secs();
            }
        }
        self.lock_speakers().remove(conference);
    }

    /// Conferences completed, their total lifetime, and endpoints admitted.
    pub(crate) fn totals(&self) -> Totals {
        let _rooms = self.lock();
        self.lock_history().totals
    }

    /// jitsi-videobridge's `conference_sizes`: how many live conferences have
    /// 0, 1, ... 20 endpoints, and 21 or more in the last bucket.
    pub(crate) fn conference_sizes(&self) -> [u64; CONFERENCE_SIZE_BUCKETS] {
        let mut buckets = [0; CONFERENCE_SIZE_BUCKETS];
        for room in self.lock().values() {
            buckets[room.len().min(CONFERENCE_SIZE_BUCKETS - 1)] += 1;
        }
        buckets
    }

    fn next_gen(&self) -> u64 {
        self.next_gen
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1)
    }

    /// Adds a new endpoint to `conference` with a fresh random id and `pwd`, for
    /// any token holder (no owner or jti rule).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn reserve(
        &self,
        conference: &ConferenceId,
        display_name: Option<String>,
        user_id: Option<String>,
    ) -> (EndpointId, String) {
        let member = Membership {
            display_name,
            user_id,
            owner: true,
            screen_sharing: true,
            ..Membership::default()
        };
        match self.admit(conference, member, false) {
            Ok(r) => r,
            // Unreachable: an owner without jti is never refused.
            Err(_) => (EndpointId(String::new()), String::new()),
        }
    }

    /// Adds a new endpoint to `conference` with a fresh random id and `pwd`, if
    /// the room rules allow: a member cannot open a room, and with
    /// `single_use_jti` a `jti` has at most one live endpoint. An owner joining a
    /// room in its grace period ends that period.
    pub(crate) fn admit(
        &self,
        conference: &ConferenceId,
        member: Membership,
        single_use_jti: bool,
    ) -> Result<(EndpointId, String), AdmitRefusal> {
        let mut rooms = self.lock();
        let open = rooms.get(conference).is_some_and(|r| !r.is_empty());
        if !open && !member.owner {
            return Err(AdmitRefusal::OwnerRequired);
        }
        if single_use_jti
            && let Some(jti) = &member.jti
            && rooms
                .values()
                .flat_map(|r| r.values())
                .any(|e| e.member.jti.as_ref() == Some(jti))
        {
            return Err(AdmitRefusal::JtiInUse);
        }
        let Caps {
            max_conferences,
            max_endpoints_per_conference,
        } = self.caps;
        match rooms.get(conference) {
            Some(room) if max_endpoints_per_conference > 0 => {
                if room.len() >= max_endpoints_per_conference {
                    return Err(AdmitRefusal::ConferenceFull);
                }
            }
            Some(_) => {}
            None => {
                if max_conferences > 0 && rooms.len() >= max_conferences {
                    return Err(AdmitRefusal::TooManyConferences);
                }
            }
        }
        if member.owner {
            self.lock_grace().remove(conference);
        }
        {
            let mut history = self.lock_history();
            if !rooms.contains_key(conference) {
                history.opened.insert(conference.clone(), Instant::now());
            }
            history.totals.participants += 1;
        }
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
                display_name: member.display_name.clone(),
                user_id: member.user_id.clone(),
                member,
                expiry_gen: 0,
                pending: Vec::new(),
                socket: None,
                media_connected: false,
                video_map: None,
                audio_map: None,
                latest: Vec::new(),
            },
        );
        Ok((id, pwd))
    }

    /// The membership an endpoint joined with.
    pub(crate) fn membership(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
    ) -> Option<Membership> {
        Some(self.lock().get(conference)?.get(endpoint)?.member.clone())
    }

    /// Records a fresh token's expiry; returns the new expiry generation.
    pub(crate) fn refresh_expiry(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        expires_at: u64,
    ) -> Option<u64> {
        let generation = self.next_gen();
        let mut rooms = self.lock();
        let entry = rooms.get_mut(conference)?.get_mut(endpoint)?;
        entry.member.expires_at = expires_at;
        entry.expiry_gen = generation;
        Some(generation)
    }

    /// The endpoint's current expiry generation and `exp`.
    pub(crate) fn expiry(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
    ) -> Option<(u64, u64)> {
        let rooms = self.lock();
        let e = rooms.get(conference)?.get(endpoint)?;
        Some((e.expiry_gen, e.member.expires_at))
    }

    /// Queues `text` for an endpoint, or keeps it until its websocket opens.
    /// Returns whether the endpoint exists.
    pub(crate) fn notify(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        text: String,
    ) -> bool {
        let mut rooms = self.lock();
        match rooms.get_mut(conference).and_then(|r| r.get_mut(endpoint)) {
            Some(entry) => {
                entry.send_or_keep(endpoint, text);
                true
            }
            None => false,
        }
    }

    /// Sends `text` to an endpoint whose socket is open; drops it otherwise
    /// (for messages that a later one replaces, as `ConnectionStats`).
    fn send_if_open(&self, conference: &ConferenceId, endpoint: &EndpointId, text: String) {
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(conference).and_then(|r| r.get_mut(endpoint)) {
            entry.send(endpoint, text);
        }
    }

    /// Removes an endpoint after queueing `last` for it (its socket sends it, then
    /// closes); tells the others it left. Returns `None` if it did not exist.
    pub(crate) fn remove_with_notice(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        last: Option<String>,
    ) -> Option<Removed> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(conference)?;
        let mut gone = room.remove(endpoint)?;
        if let Some(text) = last {
            gone.send(endpoint, text);
        }
        let text = colibri::connectivity(endpoint, false);
        for (id, other) in room.iter_mut() {
            other.send(id, text.clone());
        }
        let outcome = if room.is_empty() {
            rooms.remove(conference);
            self.lock_grace().remove(conference);
            self.conference_ended(conference);
            Removed::Done
        } else if gone.member.owner && !room.values().any(|e| e.member.owner) {
            let generation = self.next_gen();
            self.lock_grace().insert(conference.clone(), generation);
            Removed::LastOwnerLeft(generation)
        } else {
            Removed::Done
        };
        Some(outcome)
    }

    /// Ends the owner grace period `generation` of `conference` if it is still running
    /// (no owner came back): queues `last` for every endpoint, removes them all
    /// and returns their ids (for the media plane).
    pub(crate) fn end_grace(
        &self,
        conference: &ConferenceId,
        generation: u64,
        last: &str,
    ) -> Vec<EndpointId> {
        let mut rooms = self.lock();
        {
            let mut grace = self.lock_grace();
            if grace.get(conference) != Some(&generation) {
                return Vec::new();
            }
            grace.remove(conference);
        }
        let Some(room) = rooms.get(conference) else {
            return Vec::new();
        };
        if room.values().any(|e| e.member.owner) {
            return Vec::new();
        }
        let Some(mut room) = rooms.remove(conference) else {
            return Vec::new();
        };
        self.conference_ended(conference);
        let mut ids = Vec::with_capacity(room.len());
        for (id, entry) in room.iter_mut() {
            entry.send(id, last.to_owned());
            ids.push(id.clone());
        }
        ids.sort();
        ids
    }

    /// Whether `conference` is in its owner grace period.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn in_grace(&self, conference: &ConferenceId) -> bool {
        let _rooms = self.lock();
        self.lock_grace().contains_key(conference)
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
    ///
    /// This does not start the owner grace period; use
    /// [`Registry::remove_with_notice`] for endpoints that were really live.
    #[cfg_attr(not(test), allow(dead_code))]
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
            self.conference_ended(conference);
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
    /// what it must see first: `ServerHello`, the latest source maps, the
    /// conference's dominant speaker, and which other endpoints already have media.
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
        let mut first = vec![colibri::server_hello()];
        let entry = room.get(endpoint)?;
        if let Some(map) = &entry.video_map {
            first.push(colibri::sources_map(true, map, |o| owner_name(room, o)));
        }
        if let Some(map) = &entry.audio_map {
            first.push(colibri::sources_map(false, map, |o| owner_name(room, o)));
        }
        if let Some(text) = self.lock_speakers().get(conference) {
            first.push(text.clone());
        }
        first.extend(entry.latest.iter().map(|(_, text)| text.clone()));
        let entry = room.get_mut(endpoint)?;
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let id = self
            .next_socket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        entry.socket = Some(Socket { id, tx });
        first.extend(
            connected_others
                .iter()
                .map(|o| colibri::connectivity(o, true)),
        );
        first.append(&mut entry.pending);
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

    /// Applies one event from the media plane. Returns the owner grace period to
    /// start when an expired endpoint was the room's last owner.
    pub(crate) fn handle_event(&self, event: MediaEvent) -> Option<(ConferenceId, u64)> {
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
                            return None;
                        }
                    }
                }
                self.broadcast(
                    &conference,
                    Some(&endpoint),
                    &colibri::connectivity(&endpoint, true),
                );
                None
            }
            MediaEvent::EndpointExpired {
                conference,
                endpoint,
                reason,
            } => {
                let removed = self.remove_with_notice(&conference, &endpoint, None)?;
                tracing::info!(%conference, %endpoint, reason, "endpoint expired");
                match removed {
                    Removed::LastOwnerLeft(generation) => Some((conference, generation)),
                    Removed::Done => None,
                }
            }
            MediaEvent::ForwardingRefused {
                conference,
                endpoint,
                source,
                reason,
            } => {
                tracing::info!(%conference, %endpoint, %source, reason = reason.code(), "source not forwarded");
                let text = colibri::forwarding_refused(&source, reason);
                self.notify(&conference, &endpoint, text);
                None
            }
            MediaEvent::SourcesMapChanged {
                conference,
                receiver,
                sources,
            } => {
                self.set_maps(&conference, &receiver, sources);
                None
            }
            MediaEvent::DominantSpeakerChanged {
                conference,
                dominant,
                previous,
            } => {
                self.set_dominant_speaker(&conference, &dominant, &previous);
                None
            }
            MediaEvent::ConnectionStats {
                conference,
                endpoint,
                estimated_downlink_bps,
            } => {
                let text = colibri::connection_stats(estimated_downlink_bps);
                self.send_if_open(&conference, &endpoint, text);
                None
            }
            MediaEvent::ForwardedSourcesChanged {
                conference,
                receiver,
                sources,
            } => {
                debug!(%conference, endpoint = %receiver, forwarded = sources.len(), "forwarded sources");
                let text = colibri::forwarded_sources(&sources);
                self.send_latest(&conference, &receiver, "ForwardedSources".into(), text);
                None
            }
            MediaEvent::SenderSourceConstraints {
                conference,
                sender,
                source,
                max_height,
            } => {
                debug!(%conference, endpoint = %sender, %source, max_height, "sender source constraints");
                let text = colibri::sender_source_constraints(&source, max_height);
                self.send_latest(&conference, &sender, source, text);
                None
            }
        }
    }

    /// Sends `text` to the endpoint's socket and keeps it, as the latest under
    /// `key`, for a socket that opens later (replacing an older one).
    fn send_latest(
        &self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        key: String,
        text: String,
    ) {
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(conference).and_then(|r| r.get_mut(endpoint)) else {
            debug!(%conference, %endpoint, "allocation message for an unknown endpoint");
            return;
        };
        entry.latest.retain(|(k, _)| *k != key);
        if entry.latest.len() >= LATEST_KEPT {
            entry.latest.remove(0);
        }
        entry.latest.push((key, text.clone()));
        entry.send(endpoint, text);
    }

    /// Sends a conference's new dominant speaker to every endpoint of it, and
    /// keeps it for sockets that open later.
    fn set_dominant_speaker(
        &self,
        conference: &ConferenceId,
        dominant: &EndpointId,
        previous: &[EndpointId],
    ) {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(conference) else {
            debug!(%conference, endpoint = %dominant, "dominant speaker of an unknown conference");
            return;
        };
        debug!(%conference, endpoint = %dominant, "dominant speaker");
        let text = colibri::dominant_speaker(dominant, previous);
        for (id, entry) in room.iter_mut() {
            entry.send(id, text.clone());
        }
        self.lock_speakers().insert(conference.clone(), text);
    }

    /// Stores a receiver's maps and sends those that changed.
    fn set_maps(
        &self,
        conference: &ConferenceId,
        receiver: &EndpointId,
        sources: Vec<MappedSource>,
    ) {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(conference) else {
            debug!(%conference, endpoint = %receiver, "sources map for an unknown endpoint");
            return;
        };
        let Some(entry) = room.get(receiver) else {
            debug!(%conference, endpoint = %receiver, "sources map for an unknown endpoint");
            return;
        };
        let (video, audio): (Vec<_>, Vec<_>) = sources.into_iter().partition(|s| s.video);
        let video_changed = entry.video_map.as_ref() != Some(&video);
        let audio_changed = entry.audio_map.as_ref() != Some(&audio);
        // Without a socket the maps are only stored: `attach_socket` sends them when
        // one opens. Every join changes the maps of every receiver of its conference,
        // and most joins come before their socket: serializing them for nobody was a
        // tenth of the bridge's CPU per join in `ringbridge-bench scale`.
        let open = entry.socket.is_some();
        let video_text = (video_changed && open)
            .then(|| colibri::sources_map(true, &video, |o| owner_name(room, o)));
        let audio_text = (audio_changed && open)
            .then(|| colibri::sources_map(false, &audio, |o| owner_name(room, o)));
        let Some(entry) = room.get_mut(receiver) else {
            return;
        };
        if video_changed {
            entry.video_map = Some(video);
        }
        if audio_changed {
            entry.audio_map = Some(audio);
        }
        for text in [video_text, audio_text].into_iter().flatten() {
            entry.send(receiver, text);
        }
    }

    /// Whether `conference` has at least one endpoint (drain lets joins to it in).
    pub(crate) fn has_conference(&self, conference: &ConferenceId) -> bool {
        self.lock().contains_key(conference)
    }

    /// Conferences with at least one endpoint (graceful shutdown waits for 0).
    pub(crate) fn conference_count(&self) -> usize {
        self.lock().len()
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
    fn completed_conferences_are_counted_with_their_lifetime() {
        let reg = Registry::default();
        let other = ConferenceId("other".into());
        let (a, _) = reg.reserve(&conf(), None, None);
        let (b, _) = reg.reserve(&conf(), None, None);
        let (c, _) = reg.reserve(&other, None, None);
        let mut sizes = [0; CONFERENCE_SIZE_BUCKETS];
        sizes[1] = 1;
        sizes[2] = 1;
        assert_eq!(reg.conference_sizes(), sizes);
        assert_eq!(
            reg.totals(),
            Totals {
                participants: 3,
                ..Totals::default()
            }
        );
        // Pretend the first room opened 90 s ago.
        let ninety = Instant::now()
            .checked_sub(Duration::from_secs(90))
            .expect("the clock is past 90 s");
        reg.lock_history().opened.insert(conf(), ninety);

        // One endpoint leaving does not end the conference.
        assert!(reg.remove(&conf(), &a, true));
        assert_eq!(reg.totals().conferences_completed, 0);
        // The last one does.
        assert_eq!(
            reg.remove_with_notice(&conf(), &b, None),
            Some(Removed::Done)
        );
        let totals = reg.totals();
        assert_eq!(totals.conferences_completed, 1);
        assert!((90..92).contains(&totals.conference_seconds), "{totals:?}");
        assert!(reg.remove(&other, &c, false));
        assert_eq!(reg.totals().conferences_completed, 2);
        assert_eq!(reg.conference_sizes(), [0; CONFERENCE_SIZE_BUCKETS]);
    }

    #[test]
    fn source_maps_set_before_the_socket_are_sent_when_it_opens_and_changes_after() {
        let reg = Registry::default();
        let (a, _) = reg.reserve(&conf(), None, None);
        let (b, _) = reg.reserve(&conf(), Some("Bea".into()), None);
        let src = |ssrc: u32, video: bool| MappedSource {
            source: format!("{b}-{}0", if video { 'v' } else { 'a' }).into(),
            owner: b.0.as_str().into(),
            ssrc,
            video,
            mid: if video { "1".into() } else { "0".into() },
        };
        let maps = |ssrc: u32| MediaEvent::SourcesMapChanged {
            conference: conf(),
            receiver: a.clone(),
            sources: vec![src(ssrc, false), src(ssrc + 1, true)],
        };
        // Before a's socket: stored, not serialized for nobody.
        reg.handle_event(maps(10));
        reg.handle_event(maps(20));
        let name = |o: &str| (o == b.0).then(|| "Bea".to_owned());
        let video = colibri::sources_map(true, &[src(21, true)], name);
        let audio = colibri::sources_map(false, &[src(20, false)], name);
        let (_, mut rx) = reg.attach_socket(&conf(), &a).expect("attached");
        assert_eq!(rx.try_recv().ok(), Some(colibri::server_hello()));
        assert_eq!(rx.try_recv().ok(), Some(video));
        assert_eq!(rx.try_recv().ok(), Some(audio));
        assert!(rx.try_recv().is_err());
        // With the socket open, a change is sent and an unchanged map is not.
        reg.handle_event(maps(20));
        assert!(rx.try_recv().is_err());
        reg.handle_event(maps(30));
        assert_eq!(
            rx.try_recv().ok(),
            Some(colibri::sources_map(true, &[src(31, true)], name))
        );
        assert_eq!(
            rx.try_recv().ok(),
            Some(colibri::sources_map(false, &[src(30, false)], name))
        );
    }

    #[test]
    fn the_dominant_speaker_reaches_everyone_and_later_sockets_and_ends_with_the_room() {
        let reg = Registry::default();
        let (a, _) = reg.reserve(&conf(), None, None);
        let (b, _) = reg.reserve(&conf(), None, None);
        let (_, mut rx_a) = reg.attach_socket(&conf(), &a).expect("attached");
        assert_eq!(rx_a.try_recv().ok(), Some(colibri::server_hello()));
        reg.handle_event(MediaEvent::DominantSpeakerChanged {
            conference: conf(),
            dominant: b.clone(),
            previous: vec![a.clone()],
        });
        let text = colibri::dominant_speaker(&b, std::slice::from_ref(&a));
        // Sent to everyone, the speaker included.
        assert_eq!(rx_a.try_recv().ok(), Some(text.clone()));
        // A socket that opens later gets the latest one after the hello.
        let (_, mut rx_b) = reg.attach_socket(&conf(), &b).expect("attached");
        assert_eq!(rx_b.try_recv().ok(), Some(colibri::server_hello()));
        assert_eq!(rx_b.try_recv().ok(), Some(text));
        // An unknown conference is ignored; the room's end forgets its speaker.
        reg.handle_event(MediaEvent::DominantSpeakerChanged {
            conference: ConferenceId("nope".into()),
            dominant: a.clone(),
            previous: Vec::new(),
        });
        assert!(
            reg.lock_speakers()
                .get(&ConferenceId("nope".into()))
                .is_none()
        );
        assert!(reg.remove(&conf(), &a, false));
        assert!(reg.remove(&conf(), &b, false));
        assert!(reg.lock_speakers().is_empty());
    }

    #[test]
    fn huge_conferences_share_the_last_size_bucket() {
        let reg = Registry::default();
        for _ in 0..30 {
            reg.reserve(&conf(), None, None);
        }
        let sizes = reg.conference_sizes();
        assert_eq!(sizes[CONFERENCE_SIZE_BUCKETS - 1], 1);
        assert_eq!(sizes.iter().sum::<u64>(), 1);
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
