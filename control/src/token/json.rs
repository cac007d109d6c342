//! A strict JSON reader for token headers and payloads.
//!
//! `serde_json` (and so `jsonwebtoken`) silently keeps the last of two equal keys,
//! so `{"room":"a","room":"*"}` could mean different things to the bridge and to
//! whatever else reads the token. This reader refuses duplicate keys at any depth.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a JSON text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrictJsonError {
    /// Not JSON, or not an object at the top.
    NotAnObject,
    /// An object has the same key twice.
    DuplicateKey,
}

/// Parses `bytes` as a JSON object, refusing duplicate keys anywhere inside.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match Strict::deserialize(&mut de) {
        Ok(Strict(v)) => v,
        Err(e) if e.to_string().starts_with(DUPLICATE) => {
            return Err(StrictJsonError::DuplicateKey);
        }
        Err(_) => return Err(StrictJsonError::NotAnObject),
    };
    de.end().map_err(|_| StrictJsonError::NotAnObject)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(StrictJsonError::NotAnObject),
    }
}

const DUPLICATE: &str = "duplicate key";

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.insert(key, value).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_refused_at_any_depth() {
        assert!(parse_object(br#"{"a":1,"b":{"c":[1,{"d":2}]}}"#).is_ok());
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#),
            Err(StrictJsonError::DuplicateKey)
        );
        assert_eq!(
            parse_object(br#"{"a":{"b":1,"b":1}}"#),
            Err(StrictJsonError::DuplicateKey)
        );
        assert_eq!(
            parse_object(br#"{"a":[{"x":1,"x":2}]}"#),
            Err(StrictJsonError::DuplicateKey)
        );
        // Escapes that decode to the same key are duplicates too.
        assert_eq!(
            parse_object(br#"{"room":"a","r\u006fom":"b"}"#),
            Err(StrictJsonError::DuplicateKey)
        );
    }

    #[test]
    fn non_objects_refused() {
        for bad in [&b"[1]"[..], b"1", b"\"x\"", b"{", b"{} {}", b"", b"nul"] {
            assert_eq!(
                parse_object(bad),
                Err(StrictJsonError::NotAnObject),
                "{bad:?}"
            );
        }
        let v = parse_object(br#"{"n":1.5,"m":-3,"t":true,"z":null}"#).expect("object");
        assert_eq!(v["n"], 1.5);
        assert_eq!(v["m"], -3);
    }
}
