//! The media plane as the control plane sees it: placement of conferences on
//! shards, commands over each shard's bounded queue, and summed counters.

use std::collections::HashMap;
use std::sync::Mutex;

use ringbridge_control::media::{
    ConferenceId, EndpointId, EndpointPolicy, JoinAnswer, JoinRequest, MediaError, MediaPlane,
    MediaStats, MuteRequest, ReceiverConstraintsUpdate, RefusalReason,
};
use tokio::sync::oneshot;

use crate::io::{ShardCommand, ShardHandle, TcpListenerStats};

/// Conferences per shard and how many endpoints each has there (control path only;
/// the packet path never touches this lock).
#[derive(Debug, Default)]
struct Placement {
    conferences: HashMap<ConferenceId, (usize, usize)>,
}

/// The shards, behind the control plane's [`MediaPlane`] interface.
#[derive(Debug)]
pub struct ShardedMediaPlane {
    shards: Vec<ShardHandle>,
    placement: Mutex<Placement>,
    /// Per shard: the last heartbeat seen and when it last moved.
    liveness: Mutex<Vec<(u64, std::time::Instant)>>,
    stall_after: std::time::Duration,
    tcp: Option<std::sync::Arc<TcpListenerStats>>,
}

/// A shard whose loop has not turned for this long is reported unhealthy (its
/// loop wakes at least every 200 ms).
pub const STALL_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

impl ShardedMediaPlane {
    /// Wraps running shards.
    pub fn new(shards: Vec<ShardHandle>) -> Self {
        let now = std::time::Instant::now();
        Self {
            liveness: Mutex::new(shards.iter().map(|s| (s.stats.heartbeat(), now)).collect()),
            shards,
            placement: Mutex::new(Placement::default()),
            stall_after: STALL_AFTER,
            tcp: None,
        }
    }

    /// Reports the ICE-TCP listener's counters with the shards'.
    pub fn with_tcp_listener(mut self, stats: std::sync::Arc<TcpListenerStats>) -> Self {
        self.tcp = Some(stats);
        self
    }

    /// Reports a shard unhealthy after `d` without progress instead of [`STALL_AFTER`].
    pub fn with_stall_after(mut self, d: std::time::Duration) -> Self {
        self.stall_after = d;
        self
    }

    /// The shard handles.
    pub fn shards(&self) -> &[ShardHandle] {
        &self.shards
    }

    /// Picks the conference's shard (the least loaded one for a new conference)
    /// and counts the endpoint there.
    fn place(&self, conference: &ConferenceId) -> Result<usize, MediaError> {
        let mut p = self.placement.lock().map_err(|_| MediaError::Unavailable)?;
        if let Some((shard, n)) = p.conferences.get_mut(conference) {
            *n += 1;
            return Ok(*shard);
        }
        let shard = self
            .shards
            .iter()
            .min_by_key(|s| s.load())
            .map(|s| s.index)
            .ok_or(MediaError::Unavailable)?;
        p.conferences.insert(conference.clone(), (shard, 1));
        Ok(shard)
    }

    fn unplace(&self, conference: &ConferenceId) {
        if let Ok(mut p) = self.placement.lock()
            && let Some((_, n)) = p.conferences.get_mut(conference)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                p.conferences.remove(conference);
            }
        }
    }

    fn shard_of(&self, conference: &ConferenceId) -> Option<usize> {
        let p = self.placement.lock().ok()?;
        p.conferences.get(conference).map(|(s, _)| *s)
    }

    /// Notes that the media plane expired an endpoint on its own.
    pub fn endpoint_expired(&self, conference: &ConferenceId) {
        self.unplace(conference);
    }

    /// Asks every shard thread to stop.
    pub fn shutdown(&self) {
        for s in &self.shards {
            let _ = s.send(ShardCommand::Shutdown);
        }
    }
}

impl ShardedMediaPlane {
    /// Sends a command with a reply to the conference's shard and awaits the reply.
    async fn ask(
        &self,
        conference: &ConferenceId,
        cmd: impl FnOnce(oneshot::Sender<Result<(), MediaError>>) -> ShardCommand,
    ) -> Result<(), MediaError> {
        let shard = self.shard_of(conference).ok_or(MediaError::NotFound)?;
        let (reply, done) = oneshot::channel();
        self.shards[shard].send(cmd(reply))?;
        done.await.unwrap_or(Err(MediaError::Unavailable))
    }
}

impl MediaPlane for ShardedMediaPlane {
    async fn join_with_policy(
        &self,
        req: JoinRequest,
        policy: EndpointPolicy,
    ) -> Result<JoinAnswer, MediaError> {
        let conference = req.conference.clone();
        let shard = self.place(&conference)?;
        let (reply, answer) = oneshot::channel();
        let result = match self.shards[shard].send(ShardCommand::Join { req, policy, reply }) {
            Ok(()) => answer.await.unwrap_or(Err(MediaError::Unavailable)),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.unplace(&conference);
        }
        result
    }

    async fn mute(
        &self,
        conference: ConferenceId,
        endpoint: EndpointId,
        mute: MuteRequest,
    ) -> Result<(), MediaError> {
        self.ask(&conference.clone(), |reply| ShardCommand::Mute {
            conference,
            endpoint,
            mute,
            reply,
        })
        .await
    }

    async fn refuse_source(
        &self,
        conference: ConferenceId,
        endpoint: EndpointId,
        source: String,
        reason: RefusalReason,
    ) -> Result<(), MediaError> {
        self.ask(&conference.clone(), |reply| ShardCommand::RefuseSource {
            conference,
            endpoint,
            source,
            reason,
            reply,
        })
        .await
    }

    async fn set_receiver_constraints(
        &self,
        conference: ConferenceId,
        endpoint: EndpointId,
        update: ReceiverConstraintsUpdate,
    ) -> Result<(), MediaError> {
        self.ask(&conference.clone(), |reply| {
            ShardCommand::SetReceiverConstraints {
                conference,
                endpoint,
                update,
                reply,
            }
        })
        .await
    }

    async fn join(&self, req: JoinRequest) -> Result<JoinAnswer, MediaError> {
        self.join_with_policy(req, EndpointPolicy::default()).await
    }

    async fn leave(
        &self,
        conference: ConferenceId,
        endpoint: EndpointId,
    ) -> Result<(), MediaError> {
        let shard = self.shard_of(&conference).ok_or(MediaError::NotFound)?;
        let (reply, done) = oneshot::channel();
        self.shards[shard].send(ShardCommand::Leave {
            conference: conference.clone(),
            endpoint,
            reply,
        })?;
        let result = done.await.unwrap_or(Err(MediaError::Unavailable));
        if result.is_ok() {
            self.unplace(&conference);
        }
        result
    }

    fn health(&self) -> Result<(), String> {
        let now = std::time::Instant::now();
        let mut live = self
            .liveness
            .lock()
            .map_err(|_| "liveness lock poisoned".to_owned())?;
        let mut stalled = Vec::new();
        for (shard, (beat, moved)) in self.shards.iter().zip(live.iter_mut()) {
            let current = shard.stats.heartbeat();
            if current != *beat {
                *beat = current;
                *moved = now;
            } else if now.duration_since(*moved) > self.stall_after {
                stalled.push(shard.index);
            }
        }
        if stalled.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "shard(s) {stalled:?} made no progress for over {} ms",
                self.stall_after.as_millis()
            ))
        }
    }

    fn stats(&self) -> MediaStats {
        let mut s = MediaStats {
            io_backend: self.shards.first().map_or("none", |s| s.backend),
            gso: self.shards.iter().any(|s| s.stats.gso()),
            tcp_accepted: self.tcp.as_ref().map_or(0, |t| t.accepted()),
            tcp_refused: self.tcp.as_ref().map_or(0, |t| t.refused()),
            ..MediaStats::default()
        };
        for shard in &self.shards {
            let snap = shard.stats.snapshot(shard.index, shard.core);
            s.conferences += snap.conferences;
            s.endpoints += snap.endpoints;
            s.largest_conference = s.largest_conference.max(shard.stats.largest_conference());
            s.packets_received += snap.packets_received;
            s.packets_sent += snap.packets_sent;
            s.bytes_received += snap.bytes_received;
            s.bytes_sent += snap.bytes_sent;
            s.shards.push(snap);
        }
        s
    }
}
