//! `GET /metrics`: the media plane's counters in Prometheus (OpenMetrics) text
//! format, through the `prometheus-client` crate.
//!
//! The media plane keeps its own cumulative counters ([`MediaStats`]); each
//! scrape copies one snapshot into a fresh registry and encodes it. Counters
//! are per shard (label `shard`), so a hot shard shows up; sum them for the
//! bridge. Drops carry a `reason` label: `garbage`, `oversized`,
//! `unknown_port`, `unknown_source`, `stun_integrity`, `stun_username`,
//! `stun_other`, `malformed`, `auth` (SRTP/SRTCP authentication failure),
//! `replay`, `unknown_ssrc`, `policy`, `rtx`, `rtx_padding`, `silence` (audio of
//! level 127 after the first few packets of a silent run), `audio_last_n` (audio
//! of a speaker not among the loudest).
//! Send failures (`send_failures`) carry one too: `backlog_full`,
//! `message_too_big`, `unreachable`, `permission`, `other`.
//!
//! Joins refused by signalling are counted by error code
//! (`ringbridge_joins_refused_total{code="token-expired"}`), requests over a
//! per-address rate limit by kind (`ringbridge_rate_limited_total{kind="join"}`,
//! `{kind="websocket"}`), and the process's
//! own CPU time, memory, threads and file descriptors follow the standard
//! Prometheus names (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, ...), without the `ringbridge_` prefix.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::media::{MediaStats, ShardSnapshot};
use crate::process::ProcessStats;
use crate::stats::{ControlView, Rates, stress_level};

/// The `Content-Type` of the scrape (OpenMetrics 1.0, which Prometheus reads).
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// A per-shard counter: `(name, help, value)`.
type ShardCounter = (&'static str, &'static str, fn(&ShardSnapshot) -> u64);

const SHARD_COUNTERS: &[ShardCounter] = &[
    (
        "packets_received",
        "Datagrams received by the shard.",
        |s| s.packets_received,
    ),
    (
        "bytes_received",
        "UDP payload bytes received by the shard.",
        |s| s.bytes_received,
    ),
    ("packets_sent", "Datagrams sent by the shard.", |s| {
        s.packets_sent
    }),
    ("bytes_sent", "UDP payload bytes sent by the shard.", |s| {
        s.bytes_sent
    }),
    (
        "stun_refused",
        "STUN checks refused (bad username or integrity).",
        |s| s.stun_refused,
    ),
    (
        "ice_successes",
        "Endpoints whose first ICE check succeeded.",
        |s| s.ice_successes,
    ),
    (
        "ice_failures",
        "Endpoints expired without ever passing an ICE check.",
        |s| s.ice_failures,
    ),
    (
        "dtls_successes",
        "DTLS handshakes completed and verified.",
        |s| s.dtls_successes,
    ),
    ("dtls_failures", "DTLS handshakes that failed.", |s| {
        s.dtls_failures
    }),
    (
        "send_errors",
        "Datagrams not sent, all reasons (see send_failures).",
        |s| s.send_errors,
    ),
    (
        "segmented_sends",
        "Messages sent with UDP GSO that carried more than one datagram.",
        |s| s.segmented_sends,
    ),
    (
        "send_backlogged",
        "Datagrams that met a full socket buffer and waited in the socket's send backlog.",
        |s| s.send_backlogged,
    ),
    (
        "events_dropped",
        "Media events dropped because the channel to the control plane was full.",
        |s| s.events_dropped,
    ),
    (
        "single_port_handoffs",
        "Single-port mode: datagrams that reached this shard for another shard's endpoint and were passed to it.",
        |s| s.single_port_handoffs,
    ),
    (
        "single_port_handoffs_dropped",
        "Single-port mode: datagrams that could not be passed to their shard (queue full).",
        |s| s.single_port_handoffs_dropped,
    ),
    (
        "rtx_received",
        "Publishers' RTX packets unwrapped and handled as the original.",
        |s| s.rtx_received,
    ),
    (
        "nacks_received",
        "NACK packets received from receivers (jvb `numNacksReceived`).",
        |s| s.nacks_received,
    ),
    (
        "retransmissions_requested",
        "Packets receivers asked for in NACKs (jvb `numRetransmissionsRequested`).",
        |s| s.retransmissions_requested,
    ),
    (
        "retransmissions_sent",
        "Retransmissions sent to receivers, RTX or plain (jvb `numRetransmittedPackets`).",
        |s| s.retransmissions_sent,
    ),
    (
        "retransmissions_suppressed",
        "Asked-for packets not resent: already resent to that receiver within one RTT.",
        |s| s.retransmissions_suppressed,
    ),
    (
        "retransmissions_held",
        "Asked-for packets not resent: of a layer the simulcast slot had left, while the receiver's link was congested (queue past 50 ms).",
        |s| s.retransmissions_held,
    ),
    (
        "cache_hits",
        "Asked-for packets found in a source's packet cache.",
        |s| s.cache_hits,
    ),
    (
        "cache_misses",
        "Asked-for packets not in the cache (jvb `numCacheMisses`).",
        |s| s.cache_misses,
    ),
    ("nacks_sent", "NACK packets sent to publishers.", |s| {
        s.nacks_sent
    }),
    (
        "keyframe_requests_received",
        "PLIs and FIRs from receivers (jvb `numPlisReceived` + `numFirsReceived`).",
        |s| s.keyframe_requests_received,
    ),
    (
        "keyframe_requests_sent",
        "Keyframe requests sent to publishers (jvb `numPlisForwarded` + `numFirsForwarded` + `numPlisGenerated`).",
        |s| s.keyframe_requests_sent,
    ),
    (
        "keyframe_requests_throttled",
        "Keyframe requests dropped by throttling (jvb `numPlisDropped` + `numFirsDropped`).",
        |s| s.keyframe_requests_throttled,
    ),
    (
        "twcc_feedback_sent",
        "Transport-cc feedback packets sent to publishers (jvb `num_tcc_packets_sent`).",
        |s| s.twcc_feedback_sent,
    ),
    ("remb_sent", "REMB packets sent to publishers.", |s| {
        s.remb_sent
    }),
    (
        "twcc_feedback_received",
        "Transport-cc feedback packets from receivers fed to their bandwidth estimates (jvb `num_tcc_packets_received`).",
        |s| s.twcc_feedback_received,
    ),
    (
        "probe_packets_sent",
        "Padding-only packets sent to receivers as bandwidth probes.",
        |s| s.probe_packets_sent,
    ),
    (
        "tcp_connections_adopted",
        "ICE-TCP connections the shard took over from the listener.",
        |s| s.tcp_connections_adopted,
    ),
    (
        "tcp_connections_closed",
        "ICE-TCP connections closed (end of stream, error, oversized frame, idle, endpoint gone, refused at hand-off).",
        |s| s.tcp_connections_closed,
    ),
    (
        "tcp_bytes_received",
        "Payload bytes received over ICE-TCP (also in bytes_received).",
        |s| s.tcp_bytes_received,
    ),
    (
        "tcp_bytes_sent",
        "Payload bytes sent over ICE-TCP (also in bytes_sent).",
        |s| s.tcp_bytes_sent,
    ),
    (
        "tcp_frames_received",
        "Datagrams received over ICE-TCP (also in packets_received).",
        |s| s.tcp_frames_received,
    ),
    (
        "tcp_frames_sent",
        "Datagrams sent over ICE-TCP (also in packets_sent).",
        |s| s.tcp_frames_sent,
    ),
    (
        "tcp_frames_dropped",
        "Datagrams not sent over ICE-TCP because the connection's send backlog was full.",
        |s| s.tcp_frames_dropped,
    ),
    (
        "sender_reports_sent",
        "Sender reports sent to receivers for their slots.",
        |s| s.sender_reports_sent,
    ),
    (
        "xdp_received",
        "AF_XDP: datagrams received through the shard's XSK (media.io = \"xdp\").",
        |s| s.xdp_received,
    ),
    (
        "xdp_rx_dropped",
        "AF_XDP: frames from the XSK that were not a UDP datagram for one of the shard's ports.",
        |s| s.xdp_rx_dropped,
    ),
    (
        "xdp_kernel_sent",
        "AF_XDP: datagrams sent through the kernel's socket instead (no neighbour entry yet, another interface's route, another address family).",
        |s| s.xdp_kernel_sent,
    ),
    (
        "xdp_kernel_received",
        "AF_XDP: datagrams the XDP program passed to the kernel that reached a media socket (fragments, IP options).",
        |s| s.xdp_kernel_received,
    ),
    (
        "xdp_neighbour_lookups",
        "AF_XDP: next-hop MAC lookups in the kernel's neighbour table (cache misses).",
        |s| s.xdp_neighbour_lookups,
    ),
    (
        "dominant_speaker_changes",
        "Times a conference's dominant speaker changed (jvb `dominant_speaker_changes`).",
        |s| s.dominant_speaker_changes,
    ),
];

const SEND_FAILURES: &[DropReason] = &[
    ("backlog_full", |s| s.send_failed_backlog_full),
    ("message_too_big", |s| s.send_failed_too_big),
    ("unreachable", |s| s.send_failed_unreachable),
    ("permission", |s| s.send_failed_permission),
    ("other", |s| s.send_failed_other),
];

type DropReason = (&'static str, fn(&ShardSnapshot) -> u64);

const DROP_REASONS: &[DropReason] = &[
    ("auth", |s| s.dropped_auth),
    ("replay", |s| s.dropped_replay),
    ("unknown_source", |s| s.dropped_unknown_source),
    ("unknown_ssrc", |s| s.dropped_unknown_ssrc),
    ("malformed", |s| s.dropped_malformed),
    ("garbage", |s| s.dropped_garbage),
    ("oversized", |s| s.dropped_oversized),
    ("unknown_port", |s| s.dropped_unknown_port),
    ("stun_integrity", |s| s.dropped_stun_integrity),
    ("stun_username", |s| s.dropped_stun_username),
    ("stun_other", |s| s.dropped_stun_other),
    ("policy", |s| s.dropped_policy),
    ("rtx", |s| s.dropped_rtx),
    ("rtx_padding", |s| s.dropped_rtx_padding),
    ("silence", |s| s.dropped_silence),
    ("audio_last_n", |s| s.dropped_audio_last_n),
];

fn shard_label(s: &ShardSnapshot) -> Labels {
    vec![("shard", s.index.to_string())]
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

/// One scrape: every metric, encoded.
pub(crate) fn render(stats: &MediaStats, rates: &Rates, view: &ControlView) -> String {
    let mut registry = Registry::with_prefix("ringbridge");

    for &(name, help, value) in SHARD_COUNTERS {
        let family = Family::<Labels, Counter>::default();
        for s in &stats.shards {
            family.get_or_create(&shard_label(s)).inc_by(value(s));
        }
        registry.register(name, help, family);
    }
    let dropped = Family::<Labels, Counter>::default();
    for s in &stats.shards {
        for &(reason, value) in DROP_REASONS {
            dropped
                .get_or_create(&vec![
                    ("shard", s.index.to_string()),
                    ("reason", reason.to_owned()),
                ])
                .inc_by(value(s));
        }
    }
    registry.register(
        "packets_dropped",
        "Datagrams dropped, by reason: garbage (no STUN, DTLS, RTP or RTCP first byte), \
         oversized, unknown_port (its endpoint is gone), unknown_source (an address that \
         passed no ICE check, or before DTLS keys; dropped before any cryptography), \
         stun_integrity, stun_username, stun_other (STUN checks refused), malformed \
         (does not parse), auth (SRTP authentication failure), replay, unknown_ssrc, \
         policy (muted or not granted), rtx (an RTX packet that could not be unwrapped or \
         repaired a packet already received), rtx_padding (padding-only RTX probes).",
        dropped,
    );

    let send_failures = Family::<Labels, Counter>::default();
    for s in &stats.shards {
        for &(reason, value) in SEND_FAILURES {
            send_failures
                .get_or_create(&vec![
                    ("shard", s.index.to_string()),
                    ("reason", reason.to_owned()),
                ])
                .inc_by(value(s));
        }
    }
    registry.register(
        "send_failures",
        "Datagrams not sent, by reason: backlog_full (socket buffer full and its backlog \
         full or stalled), message_too_big (EMSGSIZE), unreachable (ENETUNREACH, \
         EHOSTUNREACH), permission (EPERM), other.",
        send_failures,
    );

    let expired = Family::<Labels, Counter>::default();
    for s in &stats.shards {
        for (reason, value) in [
            ("consent-expired", s.endpoints_expired_consent),
            ("dtls-failed", s.endpoints_expired_dtls),
        ] {
            expired
                .get_or_create(&vec![
                    ("shard", s.index.to_string()),
                    ("reason", reason.to_owned()),
                ])
                .inc_by(value);
        }
    }
    registry.register(
        "endpoints_expired",
        "Endpoints the media plane removed on its own, by reason: consent-expired (no valid \
         ICE check for 30 s: the client vanished without a goodbye), dtls-failed (the DTLS \
         handshake failed or timed out). Their ports and slots are freed.",
        expired,
    );
    let ports_in_use = Family::<Labels, Gauge>::default();
    let ports_free = Family::<Labels, Gauge>::default();
    for s in &stats.shards {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        ports_in_use
            .get_or_create(&shard_label(s))
            .set(clamp(s.ports_in_use));
        ports_free
            .get_or_create(&shard_label(s))
            .set(clamp(s.ports_free));
    }
    registry.register(
        "shard_ports_in_use",
        "Media ports of the shard bound to an endpoint (single-port mode: endpoint keys).",
        ports_in_use,
    );
    registry.register(
        "shard_ports_free",
        "Media ports of the shard's share of media.port_range still free to give out.",
        ports_free,
    );

    let shard_endpoints = Family::<Labels, Gauge>::default();
    let shard_conferences = Family::<Labels, Gauge>::default();
    for s in &stats.shards {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        shard_endpoints
            .get_or_create(&shard_label(s))
            .set(clamp(s.endpoints));
        shard_conferences
            .get_or_create(&shard_label(s))
            .set(clamp(s.conferences));
    }
    registry.register(
        "shard_endpoints",
        "Endpoints on the shard.",
        shard_endpoints,
    );
    registry.register(
        "shard_conferences",
        "Conferences on the shard.",
        shard_conferences,
    );
    let send_backlog = Family::<Labels, Gauge>::default();
    let events_waiting = Family::<Labels, Gauge>::default();
    let tcp_active = Family::<Labels, Gauge>::default();
    for s in &stats.shards {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        tcp_active
            .get_or_create(&shard_label(s))
            .set(clamp(s.tcp_connections_active));
        send_backlog
            .get_or_create(&shard_label(s))
            .set(clamp(s.send_backlog));
        events_waiting
            .get_or_create(&shard_label(s))
            .set(clamp(s.events_waiting));
    }
    registry.register(
        "shard_send_backlog",
        "Datagrams waiting for socket buffer space on the shard.",
        send_backlog,
    );
    registry.register(
        "shard_events_waiting",
        "Media events of the shard waiting for room in the channel to the control plane.",
        events_waiting,
    );
    registry.register(
        "tcp_connections_active",
        "Open ICE-TCP connections on the shard.",
        tcp_active,
    );
    counter(
        &mut registry,
        "tcp_connections_accepted",
        "ICE-TCP connections accepted on media.tcp_port.",
        stats.tcp_accepted,
    );
    counter(
        &mut registry,
        "tcp_connections_refused",
        "ICE-TCP connections closed by the listener before reaching a shard: no STUN check \
         naming one of its shards within 10 s, an oversized first frame, or too many waiting.",
        stats.tcp_refused,
    );

    gauge(
        &mut registry,
        "rtx_cache_memory_bytes",
        "Memory held by the packet caches of live video sources (answering NACKs), in bytes.",
        stats.shard_sum(|s| s.cache_memory_bytes),
    );
    gauge(
        &mut registry,
        "endpoints",
        "Endpoints alive.",
        stats.endpoints,
    );
    gauge(
        &mut registry,
        "conferences",
        "Conferences alive.",
        stats.conferences,
    );
    gauge(
        &mut registry,
        "largest_conference",
        "Endpoints in the largest conference.",
        stats.largest_conference,
    );
    gauge(
        &mut registry,
        "inactive_endpoints",
        "Endpoints of conferences where nobody sent audio or video in the last 3 s.",
        stats.shard_sum(|s| s.inactive_endpoints),
    );
    gauge(
        &mut registry,
        "inactive_conferences",
        "Conferences where nobody sent audio or video in the last 3 s.",
        stats.shard_sum(|s| s.inactive_conferences),
    );
    gauge(
        &mut registry,
        "drain",
        "1 while drain is on (new conferences are refused).",
        u64::from(view.drain),
    );
    gauge(
        &mut registry,
        "graceful_shutdown",
        "1 while a graceful shutdown is under way.",
        u64::from(view.graceful_shutdown),
    );
    let created = Counter::<u64>::default();
    created.inc_by(view.conferences_created);
    registry.register(
        "conferences_created",
        "Conferences created since start.",
        created,
    );
    let stress = Gauge::<f64, AtomicU64>::default();
    stress.set(stress_level(rates, view.max_packet_rate));
    registry.register(
        "stress_level",
        "Packet rate (received plus sent) over load.max_packet_rate; 1.0 is fully loaded.",
        stress,
    );
    registry.register(
        "build",
        "Version, I/O backend and whether UDP GSO is in use.",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("io_backend", stats.io_backend.to_owned()),
            ("gso", stats.gso.to_string()),
        ]),
    );

    register_control(&mut registry, view);

    let mut process = Registry::default();
    if let Some(p) = &view.process {
        register_process(&mut process, p);
    }

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode_registry(&mut out, &registry);
    let _ = encode_registry(&mut out, &process);
    let _ = encode_eof(&mut out);
    out
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// What the control plane counts itself: joins refused by code, conferences
/// completed and their lifetimes, endpoints created.
fn register_control(registry: &mut Registry, view: &ControlView) {
    let refused = Family::<Labels, Counter>::default();
    for &(code, n) in &view.joins_refused {
        refused
            .get_or_create(&vec![("code", code.to_owned())])
            .inc_by(n);
    }
    registry.register(
        "joins_refused",
        "Joins (POST /conferences/{room}/endpoints) answered with an error, by the \
         error code of the answer (token-expired, owner-required, draining, overloaded, ...).",
        refused,
    );
    let limited = Family::<Labels, Counter>::default();
    for &(kind, n) in &view.rate_limits.limited {
        limited
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc_by(n);
    }
    registry.register(
        "rate_limited",
        "Requests on the public listener answered 429 rate-limited, by kind: join (POST \
         /conferences/{room}/endpoints, also counted in joins_refused) or websocket \
         (colibri websocket upgrades).",
        limited,
    );
    gauge(
        registry,
        "rate_limit_addresses",
        "Client addresses the rate limits keep track of now (both limits together; each \
         holds at most public.rate_limit_addresses).",
        view.rate_limits.addresses,
    );
    counter(
        registry,
        "conferences_completed",
        "Conferences whose last endpoint left, since start.",
        view.totals.conferences_completed,
    );
    counter(
        registry,
        "conference_seconds",
        "Sum of the lifetimes of the completed conferences, in seconds.",
        view.totals.conference_seconds,
    );
    counter(
        registry,
        "endpoints_created",
        "Endpoints admitted by signalling, since start.",
        view.totals.participants,
    );
    counter(
        registry,
        "colibri_bad_receiver_constraints",
        "ReceiverVideoConstraints or LastNChangedEvent messages ignored as malformed, since start.",
        crate::colibri::bad_receiver_constraints(),
    );
}

/// The standard `process_*` metrics of Prometheus client libraries.
fn register_process(registry: &mut Registry, p: &ProcessStats) {
    let cpu = Counter::<f64, AtomicU64>::default();
    cpu.inc_by(p.cpu_seconds);
    registry.register(
        "process_cpu_seconds",
        "User and system CPU time of the bridge process, in seconds.",
        cpu,
    );
    gauge(
        registry,
        "process_resident_memory_bytes",
        "Resident memory of the bridge process, in bytes.",
        p.resident_bytes,
    );
    gauge(
        registry,
        "process_virtual_memory_bytes",
        "Virtual memory of the bridge process, in bytes.",
        p.virtual_bytes,
    );
    gauge(
        registry,
        "process_open_fds",
        "Open file descriptors (sockets included).",
        p.open_fds,
    );
    if let Some(max) = p.max_fds {
        gauge(
            registry,
            "process_max_fds",
            "The soft limit on open file descriptors.",
            max,
        );
    }
    gauge(
        registry,
        "process_threads",
        "Threads of the bridge process.",
        p.threads,
    );
    if let Some(start) = p.start_time_seconds {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(start);
        registry.register(
            "process_start_time_seconds",
            "When the bridge process started, in seconds since the Unix epoch.",
            g,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_encoded_per_shard() {
        let stats = MediaStats {
            io_backend: "mmsg",
            shards: vec![
                ShardSnapshot {
                    index: 0,
                    packets_received: 11,
                    dropped_replay: 3,
                    dropped_rtx: 6,
                    dropped_garbage: 12,
                    dropped_stun_integrity: 13,
                    dropped_oversized: 14,
                    nacks_received: 7,
                    retransmissions_sent: 8,
                    cache_memory_bytes: 1000,
                    ..ShardSnapshot::default()
                },
                ShardSnapshot {
                    index: 1,
                    dtls_failures: 2,
                    send_failed_unreachable: 4,
                    events_dropped: 5,
                    tcp_connections_active: 2,
                    tcp_connections_adopted: 3,
                    tcp_connections_closed: 1,
                    tcp_bytes_received: 1200,
                    tcp_frames_sent: 9,
                    tcp_frames_dropped: 4,
                    single_port_handoffs: 9,
                    xdp_received: 21,
                    ..ShardSnapshot::default()
                },
            ],
            tcp_accepted: 5,
            tcp_refused: 2,
            ..MediaStats::default()
        };
        let view = ControlView {
            max_packet_rate: 100,
            healthy: true,
            ..ControlView::default()
        };
        let rates = Rates {
            packet_rate_download: 50,
            ..Rates::default()
        };
        let text = render(&stats, &rates, &view);
        for line in [
            "ringbridge_packets_received_total{shard=\"0\"} 11",
            "ringbridge_packets_dropped_total{shard=\"0\",reason=\"replay\"} 3",
            "ringbridge_dtls_failures_total{shard=\"1\"} 2",
            "ringbridge_packets_dropped_total{shard=\"0\",reason=\"rtx\"} 6",
            "ringbridge_packets_dropped_total{shard=\"0\",reason=\"garbage\"} 12",
            "ringbridge_packets_dropped_total{shard=\"0\",reason=\"stun_integrity\"} 13",
            "ringbridge_packets_dropped_total{shard=\"0\",reason=\"oversized\"} 14",
            "ringbridge_packets_dropped_total{shard=\"1\",reason=\"unknown_port\"} 0",
            "ringbridge_nacks_received_total{shard=\"0\"} 7",
            "ringbridge_retransmissions_sent_total{shard=\"0\"} 8",
            "ringbridge_twcc_feedback_sent_total{shard=\"1\"} 0",
            "ringbridge_rtx_cache_memory_bytes 1000",
            "ringbridge_send_failures_total{shard=\"1\",reason=\"unreachable\"} 4",
            "ringbridge_send_failures_total{shard=\"0\",reason=\"backlog_full\"} 0",
            "ringbridge_events_dropped_total{shard=\"1\"} 5",
            "ringbridge_single_port_handoffs_total{shard=\"1\"} 9",
            "ringbridge_shard_send_backlog{shard=\"0\"} 0",
            "ringbridge_tcp_connections_active{shard=\"1\"} 2",
            "ringbridge_tcp_connections_adopted_total{shard=\"1\"} 3",
            "ringbridge_tcp_connections_closed_total{shard=\"1\"} 1",
            "ringbridge_tcp_bytes_received_total{shard=\"1\"} 1200",
            "ringbridge_tcp_frames_sent_total{shard=\"1\"} 9",
            "ringbridge_tcp_frames_dropped_total{shard=\"1\"} 4",
            "ringbridge_xdp_received_total{shard=\"1\"} 21",
            "ringbridge_tcp_connections_accepted_total 5",
            "ringbridge_tcp_connections_refused_total 2",
            "ringbridge_stress_level 0.5",
            "ringbridge_build_info{version=\"",
            "io_backend=\"mmsg\"",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
    }

    #[test]
    fn refused_joins_completions_and_process_metrics_are_encoded() {
        let view = ControlView {
            joins_refused: vec![("draining", 2), ("token-expired", 5)],
            rate_limits: crate::ratelimit::RateLimitView {
                limited: vec![("join", 4), ("websocket", 9)],
                addresses: 12,
            },
            totals: crate::registry::Totals {
                conferences_completed: 3,
                conference_seconds: 90,
                participants: 11,
            },
            process: Some(ProcessStats {
                cpu_seconds: 1.5,
                resident_bytes: 4096,
                virtual_bytes: 8192,
                threads: 6,
                open_fds: 17,
                max_fds: Some(1024),
                start_time_seconds: Some(1_700_000_000.0),
            }),
            ..ControlView::default()
        };
        let text = render(&MediaStats::default(), &Rates::default(), &view);
        for line in [
            "ringbridge_joins_refused_total{code=\"draining\"} 2",
            "ringbridge_joins_refused_total{code=\"token-expired\"} 5",
            "ringbridge_rate_limited_total{kind=\"join\"} 4",
            "ringbridge_rate_limited_total{kind=\"websocket\"} 9",
            "ringbridge_rate_limit_addresses 12",
            "ringbridge_conferences_completed_total 3",
            "ringbridge_conference_seconds_total 90",
            "ringbridge_endpoints_created_total 11",
            "\nprocess_cpu_seconds_total 1.5",
            "\nprocess_resident_memory_bytes 4096",
            "\nprocess_virtual_memory_bytes 8192",
            "\nprocess_open_fds 17",
            "\nprocess_max_fds 1024",
            "\nprocess_threads 6",
            "\nprocess_start_time_seconds 1700000000",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        // One EOF, at the very end.
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
