//! A receiver's video constraints, as jitsi-videobridge's colibri
//! `ReceiverVideoConstraints` message carries them (`doc/allocation.md`):
//! how many videos it wants (`lastN`), which sources it wants first
//! (`selectedSources`) and large (`onStageSources`), and the tallest video it
//! wants of each source (`constraints`, else `defaultConstraints`).
//!
//! Every field of the message is optional: a message changes only what it
//! carries ([`ReceiverConstraintsUpdate`]), applied to the state the media plane
//! keeps per receiver ([`ReceiverConstraints`]). The older `LastNChangedEvent`
//! (`{"lastN": N}`, which jitsi-videobridge accepts from clients) is an update of
//! `lastN` alone.
//!
//! Heights are `u16`: [`UNLIMITED`] is "no constraint" (a negative `maxHeight`
//! on the wire), `0` is "do not forward this source", which is never exceeded.

use serde_json::{Map, Value};

/// The height that stands for "no constraint".
pub const UNLIMITED: u16 = u16::MAX;

/// Why a `ReceiverVideoConstraints` message could not be read. The message is
/// ignored as a whole (logged and counted), never half applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConstraintsError {
    /// `lastN` is not an integer.
    #[error("lastN is not an integer")]
    LastN,
    /// A source list is not an array of strings.
    #[error("{0} is not an array of source names")]
    SourceList(&'static str),
    /// `defaultConstraints` or an entry of `constraints` is not an object
    /// whose `maxHeight` (when present) is a number.
    #[error("{0} is not a video constraint")]
    Constraint(&'static str),
    /// `constraints` is not an object.
    #[error("constraints is not an object")]
    ConstraintsMap,
    /// More source names than a receiver may name in one message
    /// ([`MAX_NAMED_SOURCES`]).
    #[error("too many source names")]
    TooMany,
}

/// Most source names one message may carry in each list or map (a bound on
/// what one client can make the media plane hold).
pub const MAX_NAMED_SOURCES: usize = 256;

/// The fields one `ReceiverVideoConstraints` message carries; `None` leaves a
/// field as it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverConstraintsUpdate {
    /// `lastN`: how many video sources to forward at most; negative is
    /// unlimited.
    pub last_n: Option<i32>,
    /// `selectedSources` (or the older `selectedEndpoints`), in priority order.
    pub selected_sources: Option<Vec<String>>,
    /// `onStageSources` (or the older `onStageEndpoints`), in priority order.
    pub on_stage_sources: Option<Vec<String>>,
    /// `defaultConstraints.maxHeight` ([`UNLIMITED`] for a negative one).
    pub default_max_height: Option<u16>,
    /// `constraints`: `maxHeight` per source name; replaces the whole map.
    pub constraints: Option<Vec<(String, u16)>>,
}

/// A receiver's constraints, as the allocator reads them. The initial state
/// forwards everything, unconstrained (`lastN` -1, no height limit: the
/// bridge's behaviour before any message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConstraints {
    /// How many video sources to forward at most (`None`: unlimited).
    pub last_n: Option<usize>,
    /// Sources to prioritise over speech order, in order.
    pub selected_sources: Vec<String>,
    /// Sources shown large: prioritised first, and given up to the preferred
    /// layer (360p) at once.
    pub on_stage_sources: Vec<String>,
    /// The tallest video of a source not named in `constraints`.
    pub default_max_height: u16,
    /// The tallest video of each named source.
    pub constraints: Vec<(String, u16)>,
}

impl Default for ReceiverConstraints {
    fn default() -> Self {
        Self {
            last_n: None,
            selected_sources: Vec::new(),
            on_stage_sources: Vec::new(),
            default_max_height: UNLIMITED,
            constraints: Vec::new(),
        }
    }
}

impl ReceiverConstraints {
    /// Applies what a message carries.
    pub fn apply(&mut self, update: &ReceiverConstraintsUpdate) {
        if let Some(n) = update.last_n {
            self.last_n = usize::try_from(n).ok();
        }
        if let Some(s) = &update.selected_sources {
            self.selected_sources = s.clone();
        }
        if let Some(s) = &update.on_stage_sources {
            self.on_stage_sources = s.clone();
        }
        if let Some(h) = update.default_max_height {
            self.default_max_height = h;
        }
        if let Some(c) = &update.constraints {
            self.constraints = c.clone();
        }
    }

    /// The tallest video wanted of `source`: its own constraint, else the default.
    pub fn max_height(&self, source: &str) -> u16 {
        self.constraints
            .iter()
            .find(|(name, _)| name == source)
            .map_or(self.default_max_height, |&(_, h)| h)
    }

    /// Whether `source` is on stage.
    pub fn on_stage(&self, source: &str) -> bool {
        self.on_stage_sources.iter().any(|s| s == source)
    }

    /// Where `source` is among the selected sources.
    pub fn selected_rank(&self, source: &str) -> Option<usize> {
        self.selected_sources.iter().position(|s| s == source)
    }
}

/// A `maxHeight` as jitsi-videobridge reads it: negative is no limit, larger
/// than `u16::MAX` is capped, a fraction is truncated.
fn height(v: &Value) -> Option<u16> {
    if let Some(i) = v.as_i64() {
        return Some(if i < 0 {
            UNLIMITED
        } else {
            u16::try_from(i).unwrap_or(UNLIMITED)
        });
    }
    let f = v.as_f64()?;
    Some(if f < 0.0 {
        UNLIMITED
    } else {
        // `as` saturates, and f is finite (JSON has no NaN or infinity).
        f.min(f64::from(UNLIMITED)) as u16
    })
}

/// One `VideoConstraints` object: its `maxHeight`, `None` when absent.
fn constraint(v: &Value, what: &'static str) -> Result<Option<u16>, ConstraintsError> {
    let obj = v.as_object().ok_or(ConstraintsError::Constraint(what))?;
    match obj.get("maxHeight") {
        None | Some(Value::Null) => Ok(None),
        Some(h) => height(h)
            .map(Some)
            .ok_or(ConstraintsError::Constraint(what)),
    }
}

fn source_list(
    msg: &Map<String, Value>,
    names: [&'static str; 2],
) -> Result<Option<Vec<String>>, ConstraintsError> {
    let Some(v) = names.iter().find_map(|n| msg.get(*n)) else {
        return Ok(None);
    };
    let list = v.as_array().ok_or(ConstraintsError::SourceList(names[0]))?;
    if list.len() > MAX_NAMED_SOURCES {
        return Err(ConstraintsError::TooMany);
    }
    list.iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or(ConstraintsError::SourceList(names[0]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl ReceiverConstraintsUpdate {
    /// Reads a `ReceiverVideoConstraints` (or `LastNChangedEvent`) message.
    /// Source names are the new format's (`{endpointId}-v0`); the older
    /// endpoint-id lists (`selectedEndpoints`, `onStageEndpoints`) are read as
    /// naming each endpoint's first video source.
    pub fn parse(msg: &Map<String, Value>) -> Result<Self, ConstraintsError> {
        let last_n = match msg.get("lastN") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = v.as_i64().ok_or(ConstraintsError::LastN)?;
                Some(i32::try_from(n).unwrap_or(if n < 0 { -1 } else { i32::MAX }))
            }
        };
        let legacy = |list: Option<Vec<String>>, legacy: bool| {
            list.map(|l| {
                if legacy {
                    l.into_iter().map(|e| format!("{e}-v0")).collect()
                } else {
                    l
                }
            })
        };
        let selected_new = msg.contains_key("selectedSources");
        let selected = legacy(
            source_list(msg, ["selectedSources", "selectedEndpoints"])?,
            !selected_new,
        );
        let on_stage_new = msg.contains_key("onStageSources");
        let on_stage = legacy(
            source_list(msg, ["onStageSources", "onStageEndpoints"])?,
            !on_stage_new,
        );
        let default_max_height = match msg.get("defaultConstraints") {
            None | Some(Value::Null) => None,
            Some(v) => constraint(v, "defaultConstraints")?,
        };
        let constraints = match msg.get("constraints") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => {
                if map.len() > MAX_NAMED_SOURCES {
                    return Err(ConstraintsError::TooMany);
                }
                let mut out = Vec::with_capacity(map.len());
                for (name, c) in map {
                    let h = constraint(c, "constraints")?.unwrap_or(UNLIMITED);
                    out.push((name.clone(), h));
                }
                Some(out)
            }
            Some(_) => return Err(ConstraintsError::ConstraintsMap),
        };
        Ok(Self {
            last_n,
            selected_sources: selected,
            on_stage_sources: on_stage,
            default_max_height,
            constraints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ReceiverConstraintsUpdate, ConstraintsError> {
        let msg: Map<String, Value> = serde_json::from_str(text).expect("test JSON");
        ReceiverConstraintsUpdate::parse(&msg)
    }

    #[test]
    fn the_documented_message_is_read_whole() {
        let u = parse(
            r#"{"colibriClass":"ReceiverVideoConstraints","lastN":2,
                "selectedSources":["A-v0","B-v0"],"onStageSources":["A-v1","C-v0"],
                "defaultConstraints":{"maxHeight":180},
                "constraints":{"A-v1":{"maxHeight":720},"B-v0":{"maxHeight":-1}}}"#,
        )
        .expect("valid");
        assert_eq!(u.last_n, Some(2));
        assert_eq!(
            u.selected_sources,
            Some(vec!["A-v0".to_owned(), "B-v0".to_owned()])
        );
        assert_eq!(
            u.on_stage_sources,
            Some(vec!["A-v1".to_owned(), "C-v0".to_owned()])
        );
        assert_eq!(u.default_max_height, Some(180));
        let mut c = u.constraints.expect("constraints");
        c.sort();
        assert_eq!(
            c,
            vec![("A-v1".to_owned(), 720), ("B-v0".to_owned(), UNLIMITED)]
        );
    }

    #[test]
    fn absent_fields_leave_earlier_ones_in_force() {
        let mut state = ReceiverConstraints::default();
        state.apply(
            &parse(r#"{"lastN":1,"defaultConstraints":{"maxHeight":180},"constraints":{"x-v0":{"maxHeight":0}}}"#)
                .expect("valid"),
        );
        state.apply(&parse(r#"{"selectedSources":["y-v0"]}"#).expect("valid"));
        assert_eq!(state.last_n, Some(1));
        assert_eq!(state.max_height("x-v0"), 0);
        assert_eq!(state.max_height("z-v0"), 180);
        assert_eq!(state.selected_rank("y-v0"), Some(0));
        state.apply(&parse(r#"{"lastN":-1}"#).expect("valid"));
        assert_eq!(state.last_n, None, "negative lastN is unlimited");
    }

    #[test]
    fn the_old_endpoint_lists_name_each_endpoint_s_first_video() {
        let u = parse(r#"{"selectedEndpoints":["A"],"onStageEndpoints":["B"]}"#).expect("valid");
        assert_eq!(u.selected_sources, Some(vec!["A-v0".to_owned()]));
        assert_eq!(u.on_stage_sources, Some(vec!["B-v0".to_owned()]));
    }

    #[test]
    fn malformed_fields_are_typed_errors() {
        assert_eq!(parse(r#"{"lastN":"two"}"#), Err(ConstraintsError::LastN));
        assert_eq!(
            parse(r#"{"selectedSources":[1]}"#),
            Err(ConstraintsError::SourceList("selectedSources"))
        );
        assert_eq!(
            parse(r#"{"defaultConstraints":7}"#),
            Err(ConstraintsError::Constraint("defaultConstraints"))
        );
        assert_eq!(
            parse(r#"{"defaultConstraints":{"maxHeight":"tall"}}"#),
            Err(ConstraintsError::Constraint("defaultConstraints"))
        );
        assert_eq!(
            parse(r#"{"constraints":[]}"#),
            Err(ConstraintsError::ConstraintsMap)
        );
        let many: Vec<String> = (0..=MAX_NAMED_SOURCES)
            .map(|i| format!("\"{i}\""))
            .collect();
        assert_eq!(
            parse(&format!(r#"{{"onStageSources":[{}]}}"#, many.join(","))),
            Err(ConstraintsError::TooMany)
        );
        // Huge and fractional heights are capped and truncated.
        assert_eq!(
            parse(r#"{"defaultConstraints":{"maxHeight":1e9}}"#)
                .expect("valid")
                .default_max_height,
            Some(UNLIMITED)
        );
        assert_eq!(
            parse(r#"{"defaultConstraints":{"maxHeight":179.5}}"#)
                .expect("valid")
                .default_max_height,
            Some(179)
        );
    }
}
