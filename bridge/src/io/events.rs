//! Media events from the shards to the control plane: one bounded channel for
//! all shards, and per shard an [`EventOutbox`] that decides what a full
//! channel may cost.
//!
//! A shard thread never blocks on the control plane, so it sends with
//! `try_send`. When the channel is full:
//!
//! - events that carry state the control plane keeps are **never dropped**:
//!   they wait in the shard's outbox, in order, and are retried every loop turn
//!   (the loop wakes within [`super::send::RETRY_AFTER`] while any wait).
//!   `EndpointConnected` and `EndpointExpired` (the registry and the placement
//!   table depend on them; a lost expiry would leave a ghost endpoint and its
//!   conference behind) come at most once per endpoint each, and
//!   `SourcesMapChanged` carries a receiver's whole map, so only its latest is
//!   kept per receiver; likewise `DominantSpeakerChanged`, one per conference. The outbox therefore holds at most about three events
//!   per endpoint the shard had while the channel stayed full; [`OUTBOX_MAX`]
//!   caps it against a control plane that stopped reading altogether.
//! - `ForwardingRefused` is a notice to the client (the refusal itself is
//!   enforced by the shard): it is dropped and counted in
//!   `ringbridge_events_dropped_total`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ringbridge_control::media::MediaEvent;
use tokio::sync::mpsc::error::TrySendError;

/// Capacity of the channel all shards share.
///
/// The control plane applies an event with a synchronous handler (a few
/// microseconds). The largest bursts are one event per member of a conference
/// (a publisher joining a 400-receiver livestream maps a slot in 400 receivers)
/// or per endpoint of a shard (consent expiring for everyone after a network
/// cut): 4096 holds ten livestream bursts before the control plane reads any.
/// Past it, state-carrying events wait in the outbox, so the capacity bounds
/// latency and memory, not correctness. tokio allocates the channel's blocks as
/// they fill, so unused capacity costs nothing.
pub const EVENT_QUEUE: usize = 4096;

/// Most events one shard's outbox keeps while the channel is full; beyond it
/// even state-carrying events are dropped and counted (the control plane has
/// not read for a long time: its health check reports it).
pub const OUTBOX_MAX: usize = 65_536;

/// At most one log line about dropped events per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The shards' side of the event channel.
pub type ShardEventSender = tokio::sync::mpsc::Sender<MediaEvent>;

/// The control plane's side of the event channel.
pub type ShardEventReceiver = tokio::sync::mpsc::Receiver<MediaEvent>;

/// The bounded channel from every shard to the control plane ([`EVENT_QUEUE`]).
pub fn event_channel() -> (ShardEventSender, ShardEventReceiver) {
    tokio::sync::mpsc::channel(EVENT_QUEUE)
}

/// Whether an event carries state the control plane keeps (see the module
/// documentation): such an event waits instead of being dropped.
fn must_deliver(ev: &MediaEvent) -> bool {
    match ev {
        MediaEvent::EndpointConnected { .. }
        | MediaEvent::EndpointExpired { .. }
        | MediaEvent::SourcesMapChanged { .. }
        | MediaEvent::DominantSpeakerChanged { .. }
        | MediaEvent::ForwardedSourcesChanged { .. }
        | MediaEvent::SenderSourceConstraints { .. } => true,
        // The next one follows within seconds.
        MediaEvent::ForwardingRefused { .. } | MediaEvent::ConnectionStats { .. } => false,
        // A new kind is kept until someone decides it may be lost.
        _ => true,
    }
}

/// One shard's sending end: the channel, the events waiting for room in it, and
/// the count of those dropped.
#[derive(Debug)]
pub struct EventOutbox {
    tx: ShardEventSender,
    waiting: VecDeque<MediaEvent>,
    dropped: u64,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl EventOutbox {
    /// An outbox sending into `tx`.
    pub fn new(tx: ShardEventSender) -> Self {
        Self {
            tx,
            waiting: VecDeque::new(),
            dropped: 0,
            last_log: None,
            unlogged: 0,
        }
    }

    /// Sends what waits, oldest first, until the channel is full again. Call
    /// once per loop turn, before [`EventOutbox::send`].
    pub fn retry(&mut self) {
        while let Some(ev) = self.waiting.pop_front() {
            match self.tx.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => {
                    self.waiting.push_front(ev);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    // The control plane is gone: nobody will read them.
                    self.waiting.clear();
                    return;
                }
            }
        }
    }

    /// Sends `ev`, or keeps it for a later turn, or drops and counts it.
    pub fn send(&mut self, now: Instant, ev: MediaEvent) {
        let ev = if self.waiting.is_empty() {
            match self.tx.try_send(ev) {
                Ok(()) | Err(TrySendError::Closed(_)) => return,
                Err(TrySendError::Full(ev)) => ev,
            }
        } else {
            // Behind what already waits, to keep the order.
            ev
        };
        if !must_deliver(&ev) || self.waiting.len() >= OUTBOX_MAX {
            self.drop_one(now, &ev);
            return;
        }
        if let MediaEvent::SourcesMapChanged {
            conference,
            receiver,
            ..
        } = &ev
        {
            // Only a receiver's latest map matters: it replaces a waiting one.
            let older = self.waiting.iter().position(|w| {
                matches!(w, MediaEvent::SourcesMapChanged { conference: c, receiver: r, .. }
                    if c == conference && r == receiver)
            });
            if let Some(i) = older {
                self.waiting.remove(i);
            }
        }
        if let MediaEvent::DominantSpeakerChanged { conference, .. } = &ev {
            // Only a conference's latest dominant speaker matters.
            let older = self.waiting.iter().position(|w| {
                matches!(w, MediaEvent::DominantSpeakerChanged { conference: c, .. } if c == conference)
            });
            if let Some(i) = older {
                self.waiting.remove(i);
            }
        }
        // Only a receiver's latest forwarded set, and a source's latest sender
        // constraint, matter.
        let older = self.waiting.iter().position(|w| match (w, &ev) {
            (
                MediaEvent::ForwardedSourcesChanged {
                    conference: c,
                    receiver: r,
                    ..
                },
                MediaEvent::ForwardedSourcesChanged {
                    conference,
                    receiver,
                    ..
                },
            ) => c == conference && r == receiver,
            (
                MediaEvent::SenderSourceConstraints {
                    conference: c,
                    source: s,
                    ..
                },
                MediaEvent::SenderSourceConstraints {
                    conference, source, ..
                },
            ) => c == conference && s == source,
            _ => false,
        });
        if let Some(i) = older {
            self.waiting.remove(i);
        }
        self.waiting.push_back(ev);
    }

    fn drop_one(&mut self, now: Instant, ev: &MediaEvent) {
        self.dropped += 1;
        if self
            .last_log
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_INTERVAL)
        {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(
            event = ?std::mem::discriminant(ev),
            waiting = self.waiting.len(),
            suppressed = self.unlogged,
            "media event channel full; event dropped"
        );
        self.last_log = Some(now);
        self.unlogged = 0;
    }

    /// Whether events wait for room (the loop then wakes soon).
    pub fn pending(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Events waiting for room.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use ringbridge_control::media::{ConferenceId, EndpointId, MappedSource, RefusalReason};

    use super::*;

    fn refused(k: usize) -> MediaEvent {
        MediaEvent::ForwardingRefused {
            conference: ConferenceId("c".into()),
            endpoint: EndpointId(format!("e{k}")),
            source: format!("e{k}-v1"),
            reason: RefusalReason::OneVideoSourceOnly,
        }
    }

    fn expired(k: usize) -> MediaEvent {
        MediaEvent::EndpointExpired {
            conference: ConferenceId("c".into()),
            endpoint: EndpointId(format!("e{k}")),
            reason: "consent-expired",
        }
    }

    fn map(receiver: &str, ssrc: u32) -> MediaEvent {
        MediaEvent::SourcesMapChanged {
            conference: ConferenceId("c".into()),
            receiver: EndpointId(receiver.into()),
            sources: vec![MappedSource {
                source: "x-v0".into(),
                owner: "x".into(),
                ssrc,
                video: true,
                mid: "1".into(),
            }],
        }
    }

    fn endpoint(ev: &MediaEvent) -> String {
        match ev {
            MediaEvent::EndpointExpired { endpoint, .. }
            | MediaEvent::ForwardingRefused { endpoint, .. } => endpoint.0.clone(),
            MediaEvent::SourcesMapChanged {
                receiver, sources, ..
            } => format!("{}@{}", receiver.0, sources[0].ssrc),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_flood_of_notices_overflows_the_channel_and_is_counted() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let mut out = EventOutbox::new(tx);
        let now = Instant::now();
        for k in 0..10 {
            out.send(now, refused(k));
        }
        assert_eq!(out.dropped(), 6);
        assert!(!out.pending(), "notices never wait");
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| endpoint(&e))
            .collect();
        assert_eq!(got, ["e0", "e1", "e2", "e3"]);
        out.send(now, refused(10));
        assert_eq!(out.dropped(), 6, "room again once read");
    }

    #[test]
    fn expiries_past_the_capacity_wait_and_all_arrive_in_order() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let mut out = EventOutbox::new(tx);
        let now = Instant::now();
        for k in 0..10 {
            out.send(now, expired(k));
        }
        // A notice behind waiting events is dropped, never put ahead of them.
        out.send(now, refused(99));
        assert_eq!(out.dropped(), 1);
        assert_eq!(out.waiting(), 6);
        let mut got = Vec::new();
        for _ in 0..5 {
            while let Ok(ev) = rx.try_recv() {
                got.push(endpoint(&ev));
            }
            out.retry();
        }
        assert!(!out.pending());
        let want: Vec<_> = (0..10).map(|k| format!("e{k}")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn only_the_latest_waiting_map_of_a_receiver_is_kept() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let mut out = EventOutbox::new(tx);
        let now = Instant::now();
        out.send(now, expired(0)); // fills the channel
        out.send(now, map("r", 1));
        out.send(now, expired(1));
        out.send(now, map("s", 1));
        out.send(now, map("r", 2));
        assert_eq!(out.waiting(), 3);
        assert_eq!(out.dropped(), 0);
        let mut got = Vec::new();
        for _ in 0..5 {
            while let Ok(ev) = rx.try_recv() {
                got.push(endpoint(&ev));
            }
            out.retry();
        }
        assert_eq!(got, ["e0", "e1", "s@1", "r@2"]);
    }

    #[test]
    fn only_the_latest_waiting_dominant_speaker_of_a_conference_is_kept() {
        let speaker = |conference: &str, who: &str| MediaEvent::DominantSpeakerChanged {
            conference: ConferenceId(conference.into()),
            dominant: EndpointId(who.into()),
            previous: Vec::new(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let mut out = EventOutbox::new(tx);
        let now = Instant::now();
        out.send(now, expired(0)); // fills the channel
        out.send(now, speaker("c", "a"));
        out.send(now, speaker("d", "x"));
        out.send(now, speaker("c", "b"));
        assert_eq!(
            out.waiting(),
            2,
            "c's first change is replaced, never dropped"
        );
        assert_eq!(out.dropped(), 0);
        let mut got = Vec::new();
        for _ in 0..4 {
            while let Ok(ev) = rx.try_recv() {
                got.push(match ev {
                    MediaEvent::DominantSpeakerChanged {
                        conference,
                        dominant,
                        ..
                    } => format!("{}:{}", conference.0, dominant.0),
                    other => endpoint(&other),
                });
            }
            out.retry();
        }
        assert_eq!(got, ["e0", "d:x", "c:b"]);
    }

    #[test]
    fn a_closed_channel_drops_silently() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let mut out = EventOutbox::new(tx);
        out.send(Instant::now(), expired(0));
        out.retry();
        assert!(!out.pending());
        assert_eq!(out.dropped(), 0);
    }
}
