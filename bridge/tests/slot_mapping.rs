//! Slot mapping as joins and leaves come: every source a receiver may see
//! gets the first free slot of its kind, in join order. A join maps only the
//! pairs it can change (`Router::rebalance_joined`); these tests hold the
//! router's mapping, after every join and leave, to a plain model of the
//! whole rebalance (every receiver, every sender, in join order), and the
//! receivers told of a new map to the ones the model changed.

mod support;

use ringbridge_bridge::proto::client::ClientConfig;
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_control::media::{ConferenceId, EndpointId, MediaEvent};
use support::net::*;

/// One receive slot of the model: its kind and the name of the endpoint
/// whose source feeds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    kind: MediaKind,
    from: Option<&'static str>,
}

/// One endpoint of the model.
#[derive(Debug, Clone)]
struct Member {
    name: &'static str,
    publishes: Vec<MediaKind>,
    slots: Vec<Slot>,
}

/// The whole rebalance, on the model: for each receiver, each other member
/// in join order, each of its sources in m-line order, the first free slot of
/// the source's kind unless the receiver already gets it. Returns the
/// receivers whose map changed, in the order they first changed.
fn rebalance(members: &mut [Member]) -> Vec<&'static str> {
    let mut changed = Vec::new();
    for r in 0..members.len() {
        for e in 0..members.len() {
            if e == r {
                continue;
            }
            let (name, publishes) = (members[e].name, members[e].publishes.clone());
            for kind in publishes {
                let slots = &mut members[r].slots;
                if slots.iter().any(|s| s.kind == kind && s.from == Some(name)) {
                    continue;
                }
                if let Some(free) = slots
                    .iter_mut()
                    .find(|s| s.kind == kind && s.from.is_none())
                {
                    free.from = Some(name);
                    if !changed.contains(&members[r].name) {
                        changed.push(members[r].name);
                    }
                }
            }
        }
    }
    changed
}

fn member(name: &'static str, cfg: ClientConfig) -> Member {
    let mut publishes = Vec::new();
    if cfg.audio {
        publishes.push(MediaKind::Audio);
    }
    if cfg.video {
        publishes.push(MediaKind::Video);
    }
    // The client's offer: audio m-lines first, then video.
    let slots = std::iter::repeat_n(MediaKind::Audio, cfg.audio_slots)
        .chain(std::iter::repeat_n(MediaKind::Video, cfg.video_slots))
        .map(|kind| Slot { kind, from: None })
        .collect();
    Member {
        name,
        publishes,
        slots,
    }
}

/// The router's mapping: per member in join order, its slots (m-line order)
/// with the name of the endpoint feeding each.
fn router_slots(net: &Net) -> Vec<(String, Vec<Slot>)> {
    let router = net
        .core
        .router(&ConferenceId("room".into()))
        .expect("the room");
    router
        .members()
        .iter()
        .map(|&k| {
            let ep = router.endpoint(k).expect("member");
            let slots = ep
                .consumers()
                .iter()
                .map(|&ck| {
                    let c = router.consumer(ck).expect("slot");
                    let from = c
                        .source()
                        .and_then(|pk| router.producer(pk))
                        .and_then(|p| router.endpoint(p.owner))
                        .map(|o| o.id().0.clone());
                    (c.kind, from)
                })
                .collect::<Vec<_>>();
            (ep.id().0.clone(), slots)
        })
        .map(|(id, slots)| {
            let slots = slots
                .into_iter()
                .map(|(kind, from)| Slot {
                    kind,
                    // Leak the few names so the model's `&'static str` compares.
                    from: from.map(|f| &*Box::leak(f.into_boxed_str())),
                })
                .collect();
            (id, slots)
        })
        .collect()
}

/// Receivers that got a `SourcesMapChanged` since the last call, in order.
fn maps_announced(net: &mut Net) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(ev) = net.core.poll_event() {
        if let MediaEvent::SourcesMapChanged { receiver, .. } = ev {
            out.push(receiver.0);
        }
    }
    out
}

fn assert_same(net: &Net, model: &[Member], after: &str) {
    let got = router_slots(net);
    let want: Vec<(String, Vec<Slot>)> = model
        .iter()
        .map(|m| (m.name.to_owned(), m.slots.clone()))
        .collect();
    assert_eq!(got, want, "slots after {after}");
}

const NAMES: [&str; 9] = [
    "ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ida",
];

/// Configurations of varied slots and sources, so that some receivers run
/// out of slots and some senders have none free at some receivers.
fn config(i: usize) -> ClientConfig {
    ClientConfig {
        audio: i % 4 != 3,
        video: i % 3 != 2,
        audio_slots: [2, 1, 3, 0][i % 4],
        video_slots: [1, 3, 2, 0, 2][i % 5],
        ..EVERYTHING
    }
}

#[test]
fn joins_into_a_room_map_every_source_onto_the_first_free_slot_in_join_order() {
    let mut net = Net::new();
    let mut model: Vec<Member> = Vec::new();
    for (i, &name) in NAMES.iter().enumerate() {
        net.join(name, config(i));
        model.push(member(name, config(i)));
        let changed = rebalance(&mut model);
        assert_same(&net, &model, name);
        assert_eq!(
            maps_announced(&mut net),
            changed,
            "receivers told of a new map when {name} joined"
        );
    }
    // Sanity: the model is not trivial (someone receives from several, and
    // a late joiner found no free slot somewhere).
    assert!(
        model
            .iter()
            .any(|m| m.slots.iter().filter(|s| s.from.is_some()).count() >= 3)
    );
    assert!(
        model
            .iter()
            .any(|m| m.slots.iter().all(|s| s.from.is_some()) && !m.slots.is_empty())
    );
}

#[test]
fn joins_after_leaves_map_as_the_whole_rebalance_does() {
    let mut net = Net::new();
    let mut model: Vec<Member> = Vec::new();
    let join = |net: &mut Net, model: &mut Vec<Member>, i: usize| {
        let name = NAMES[i];
        net.join(name, config(i));
        model.push(member(name, config(i)));
        let changed = rebalance(model);
        assert_same(net, model, name);
        assert_eq!(maps_announced(net), changed, "maps told when {name} joined");
    };
    for i in 0..5 {
        join(&mut net, &mut model, i);
    }
    // Leaves free slots; the ones freed are refilled (the whole rebalance),
    // and the joins after it map as the model says.
    for gone in ["ann", "dan"] {
        net.core
            .handle_leave(&ConferenceId("room".into()), &EndpointId(gone.into()))
            .expect("leave");
        model.retain(|m| m.name != gone);
        for m in &mut model {
            for s in &mut m.slots {
                if s.from == Some(gone) {
                    s.from = None;
                }
            }
        }
        rebalance(&mut model);
        assert_same(&net, &model, gone);
        maps_announced(&mut net);
    }
    for i in 5..NAMES.len() {
        join(&mut net, &mut model, i);
    }
}
