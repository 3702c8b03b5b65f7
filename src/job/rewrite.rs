//! Rewriting a payload for its next attempt, and reading the recovery
//! count it leads with, both without losing the producer's fields.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::JobError;

/// Rewrites a payload for its next attempt: every field the producer wrote is
/// kept in its place with its value byte for byte (copied as written, never
/// re-encoded, so big numbers and floats survive; only the white space
/// between fields goes, and a key written with escapes is re-escaped),
/// `attempt` and `id` are set where they stood or added at the end, and
/// `recoveries` leads the object so the recovery script can raise it
/// without a JSON parser.
pub fn rewrite_payload(
    payload: &[u8],
    id: &str,
    attempt: u32,
    recoveries: u32,
) -> Result<String, JobError> {
    let fields: RawFields<'_> =
        serde_json::from_slice(payload).map_err(|e| JobError::InvalidJson(e.to_string()))?;
    let id = serde_json::to_string(id).map_err(|e| JobError::InvalidJson(e.to_string()))?;
    let attempt = attempt.to_string();
    let mut out = String::with_capacity(payload.len() + id.len() + 40);
    out.push('{');
    if recoveries > 0 {
        out.push_str(&format!("\"recoveries\":{recoveries}"));
    }
    let (mut wrote_id, mut wrote_attempt) = (false, false);
    let field = |out: &mut String, key: &str, raw: &str| {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(key);
        out.push(':');
        out.push_str(raw);
    };
    for (key, raw) in &fields.0 {
        match key.as_ref() {
            "recoveries" => {}
            "id" if !wrote_id => {
                wrote_id = true;
                field(&mut out, "\"id\"", &id);
            }
            "attempt" if !wrote_attempt => {
                wrote_attempt = true;
                field(&mut out, "\"attempt\"", &attempt);
            }
            "id" | "attempt" => {}
            _ => field(&mut out, &key_text(key), raw.get()),
        }
    }
    if !wrote_id {
        field(&mut out, "\"id\"", &id);
    }
    if !wrote_attempt {
        field(&mut out, "\"attempt\"", &attempt);
    }
    out.push('}');
    Ok(out)
}

/// How many times a payload was recovered from a dead worker, read from the
/// leading field [`rewrite_payload`] and the recovery script write, without
/// parsing the whole payload.
pub fn recoveries_of(payload: &[u8]) -> u32 {
    let Some(rest) = payload.strip_prefix(b"{\"recoveries\":") else {
        return 0;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// A key as JSON text: as written when it held no escapes (the parser
/// lends it unchanged), re-escaped otherwise.
fn key_text(key: &Key<'_>) -> String {
    match &key.0 {
        Cow::Borrowed(k) => format!("\"{k}\""),
        Cow::Owned(k) => serde_json::to_string(k).unwrap_or_else(|_| format!("\"{k}\"")),
    }
}

/// A JSON object's fields in their order, duplicates included, each value
/// as its exact text.
pub(super) struct RawFields<'a>(pub Vec<(Key<'a>, &'a RawValue)>);

/// An object key, borrowed from the payload when it held no escapes.
pub(super) struct Key<'a>(pub Cow<'a, str>);

impl AsRef<str> for Key<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawFields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFields<'de>, A::Error> {
                let mut fields = Vec::new();
                while let Some((key, value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    fields.push((key, value));
                }
                Ok(RawFields(fields))
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn recoveries_are_read_from_the_leading_field() {
        assert_eq!(recoveries_of(br#"{"recoveries":3,"tool":"x"}"#), 3);
        assert_eq!(recoveries_of(br#"{"recoveries":12}"#), 12);
        assert_eq!(recoveries_of(br#"{"tool":"x","recoveries":3}"#), 0);
        assert_eq!(recoveries_of(br#"{"recoveries":"3"}"#), 0);
        assert_eq!(recoveries_of(b"not json"), 0);
        let p = rewrite_payload(br#"{"tool":"x","args":{}}"#, "i", 0, 2).unwrap();
        assert_eq!(recoveries_of(p.as_bytes()), 2);
    }

    #[test]
    fn rewrite_keeps_unknown_fields_and_leads_with_recoveries() {
        let raw = br#"{"tool":"echo","args":{"n":12345678901234567},"custom":true}"#;
        let out = rewrite_payload(raw, "id1", 2, 3).unwrap();
        assert!(out.starts_with(r#"{"recoveries":3,"#), "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["custom"], json!(true));
        assert_eq!(v["attempt"], json!(2));
        assert_eq!(v["id"], json!("id1"));
        assert_eq!(v["args"]["n"], json!(12345678901234567u64));
        let plain = rewrite_payload(raw, "id1", 1, 0).unwrap();
        assert!(!plain.contains("recoveries"));
    }

    /// Found by the `job_rewrite` fuzz target: the rewrite went through a
    /// `serde_json::Map`, which sorted the fields, turned a 30-digit integer
    /// into a float (`1.2345678901234568e29`), wrote `1.0e2` as `100.0` and
    /// re-escaped strings.
    #[test]
    fn rewrite_keeps_every_other_field_byte_for_byte_and_in_place() {
        let raw = br#"{"tool":"echo","args":{"n":123456789012345678901234567890,"f":1.0e2,"s":"\u00e9"},"zeta":1,"id":"old","alpha":[ 1 ,2 ],"attempt":7}"#;
        let out = rewrite_payload(raw, "new", 8, 0).unwrap();
        assert_eq!(
            out,
            r#"{"tool":"echo","args":{"n":123456789012345678901234567890,"f":1.0e2,"s":"\u00e9"},"zeta":1,"id":"new","alpha":[ 1 ,2 ],"attempt":8}"#
        );
        let out = rewrite_payload(br#"{"b":1,"a":2}"#, "i\"d", 0, 2).unwrap();
        assert_eq!(
            out,
            r#"{"recoveries":2,"b":1,"a":2,"id":"i\"d","attempt":0}"#
        );
        assert_eq!(
            rewrite_payload(b" {} ", "i", 1, 0).unwrap(),
            r#"{"id":"i","attempt":1}"#
        );
        assert!(rewrite_payload(b"[1]", "i", 1, 0).is_err());
        assert!(rewrite_payload(b"{} x", "i", 1, 0).is_err());
    }
}
