//! Shapes of load: who publishes what and who receives it.

use std::fmt;
use std::str::FromStr;

/// A conference shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Every endpoint publishes audio and video and receives everyone else's.
    Meeting,
    /// [`Shape::Meeting`] with every video published as three simulcast layers
    /// (SSRC simulcast, 150/500/1500 kbit/s, key frames on every layer); the
    /// bridge forwards one layer per receiver (the top one: no receiver is
    /// constrained).
    MeetingSimulcast,
    /// Endpoint 0 publishes audio and video; the others only receive it.
    Livestream,
    /// `speakers` endpoints publish audio; everyone receives every speaker but
    /// themselves. No video.
    AudioRoom,
}

impl Shape {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Meeting => "meeting",
            Self::MeetingSimulcast => "meeting-simulcast",
            Self::Livestream => "livestream",
            Self::AudioRoom => "audio-room",
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "meeting" => Ok(Self::Meeting),
            "meeting-simulcast" => Ok(Self::MeetingSimulcast),
            "livestream" => Ok(Self::Livestream),
            "audio-room" => Ok(Self::AudioRoom),
            other => Err(format!(
                "unknown shape {other:?}: expected meeting, meeting-simulcast, livestream or audio-room"
            )),
        }
    }
}

/// Layers of a simulcast video: (payload bytes per packet, packets per frame)
/// at 30 frames per second, smallest first: 625 B × 1 ≈ 150 kbit/s, 1040 B × 2
/// ≈ 500 kbit/s, and the plain video's 1200 B × 5.2 ≈ 1.5 Mbit/s (the top
/// layer's packet count follows `engine::packets_in_frame`, 0 here).
pub const SIMULCAST_LAYERS: [(usize, usize); 3] = [(625, 1), (1040, 2), (1200, 0)];

/// What one synthetic endpoint publishes and how many receive slots it offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointPlan {
    /// Index of its conference.
    pub conference: usize,
    /// Index inside the conference.
    pub index: usize,
    /// Publishes one Opus source.
    pub audio: bool,
    /// Publishes one VP8 source.
    pub video: bool,
    /// Its video is three simulcast layers (see [`SIMULCAST_LAYERS`]).
    pub simulcast: bool,
    /// `recvonly` audio m-lines.
    pub audio_slots: usize,
    /// `recvonly` video m-lines.
    pub video_slots: usize,
}

/// The endpoints of a run, conference by conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The shape.
    pub shape: Shape,
    /// Number of conferences.
    pub conferences: usize,
    /// Endpoints per conference (publishers included).
    pub endpoints: usize,
    /// Speakers per conference (audio-room), else the number of publishers.
    pub speakers: usize,
    /// Every endpoint; endpoint `e` of conference `c` is at `c * endpoints + e`.
    pub all: Vec<EndpointPlan>,
}

impl Plan {
    /// The plan for `conferences` conferences of `endpoints` endpoints each;
    /// `speakers` only matters for [`Shape::AudioRoom`].
    pub fn new(
        shape: Shape,
        conferences: usize,
        endpoints: usize,
        speakers: usize,
    ) -> Result<Self, String> {
        if conferences == 0 {
            return Err("--conferences must be at least 1".into());
        }
        if endpoints < 2 {
            return Err("--endpoints must be at least 2 (someone sends, someone receives)".into());
        }
        let speakers = match shape {
            Shape::Meeting | Shape::MeetingSimulcast => endpoints,
            Shape::Livestream => 1,
            Shape::AudioRoom => {
                if speakers == 0 || speakers > endpoints {
                    return Err(format!(
                        "--speakers must be between 1 and --endpoints ({endpoints})"
                    ));
                }
                speakers
            }
        };
        let mut all = Vec::with_capacity(conferences * endpoints);
        for conference in 0..conferences {
            for index in 0..endpoints {
                let sends = index < speakers;
                let others = if sends { speakers - 1 } else { speakers };
                all.push(EndpointPlan {
                    conference,
                    index,
                    audio: sends,
                    video: sends && shape != Shape::AudioRoom,
                    simulcast: sends && shape == Shape::MeetingSimulcast,
                    audio_slots: others,
                    video_slots: if shape == Shape::AudioRoom { 0 } else { others },
                });
            }
        }
        Ok(Self {
            shape,
            conferences,
            endpoints,
            speakers,
            all,
        })
    }

    /// How many endpoints receive each published stream: everyone else in the
    /// conference, in every shape.
    pub fn fanout(&self) -> u64 {
        self.endpoints as u64 - 1
    }

    /// Stream id of endpoint `global`'s audio (`+ 1` for its video).
    pub fn stream_id(global: usize, video: bool) -> u32 {
        (global as u32) * 2 + u32::from(video)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_publish_and_subscribe_as_documented() {
        let m = Plan::new(Shape::Meeting, 2, 4, 0).expect("meeting");
        assert_eq!(m.all.len(), 8);
        assert!(
            m.all
                .iter()
                .all(|e| e.audio && e.video && e.audio_slots == 3 && e.video_slots == 3)
        );
        let l = Plan::new(Shape::Livestream, 1, 51, 0).expect("livestream");
        assert!(l.all[0].video && l.all[0].audio_slots == 0);
        assert!(
            l.all[1..]
                .iter()
                .all(|e| !e.audio && e.audio_slots == 1 && e.video_slots == 1)
        );
        assert_eq!(l.fanout(), 50);
        let a = Plan::new(Shape::AudioRoom, 1, 10, 3).expect("audio-room");
        assert!(
            a.all[..3]
                .iter()
                .all(|e| e.audio && !e.video && e.audio_slots == 2)
        );
        assert!(
            a.all[3..]
                .iter()
                .all(|e| !e.audio && e.audio_slots == 3 && e.video_slots == 0)
        );
        assert!(Plan::new(Shape::AudioRoom, 1, 3, 4).is_err());
        let s = Plan::new(Shape::MeetingSimulcast, 1, 4, 0).expect("meeting-simulcast");
        assert!(
            s.all
                .iter()
                .all(|e| e.video && e.simulcast && e.video_slots == 3)
        );
        assert!(m.all.iter().all(|e| !e.simulcast));
        assert_eq!(
            "meeting-simulcast".parse::<Shape>(),
            Ok(Shape::MeetingSimulcast)
        );
        assert!(Plan::new(Shape::Meeting, 1, 1, 0).is_err());
    }
}
