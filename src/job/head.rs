//! Reading what can be read of a payload's first and last bytes: an
//! oversized payload reaches the worker only as its head and tail (see
//! `queue::Oversized`), and its dead result must still go to its id and its
//! waiting producer.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// The job fields a burial needs, as far as the head holds them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Head {
    pub id: Option<String>,
    pub tool: Option<String>,
    pub batch: Option<String>,
    pub unique_key: Option<String>,
    pub result_ttl_s: Option<u64>,
    pub enqueued_at: Option<u64>,
    pub attempt: Option<u32>,
    pub recoveries: Option<u32>,
}

/// Reads the top-level fields of a JSON object's first bytes in order,
/// until the bytes end or stop being JSON: a field cut short is not read,
/// the ones before it are. Fields of the wrong type are left out; large
/// values (`args`) are skipped, not built.
pub fn read_head(head: &[u8]) -> Head {
    let mut out = Head::default();
    let mut de = serde_json::Deserializer::from_slice(without_cut_number(head));
    // The error is where the head was cut: what came before is kept.
    let _ = (&mut de).deserialize_map(Fields(&mut out));
    out
}

/// `head` without the number it may end in: bytes that stop inside a number
/// (`"result_ttl_s":3600` cut after `36`) would read as a smaller one. A
/// whole payload ends in `}`, so only a cut head loses anything.
fn without_cut_number(head: &[u8]) -> &[u8] {
    let numeric = |b: &u8| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E');
    let end = head.len() - head.iter().rev().take_while(|b| numeric(b)).count();
    &head[..end]
}

/// Reads the top-level fields in a JSON object's last bytes: those after
/// the last top-level comma the bytes hold (a producer writing its keys in
/// order puts `batch` and `id` after `args`). The longest suffix starting
/// after a comma that parses as the rest of an object is the top level: a
/// suffix starting inside a nested value leaves a closing bracket over, and
/// one starting inside a string cannot parse.
pub fn read_tail(tail: &[u8]) -> Head {
    let mut rest = Vec::with_capacity(tail.len() + 1);
    for (i, _) in tail.iter().enumerate().filter(|(_, b)| **b == b',') {
        rest.clear();
        rest.push(b'{');
        rest.extend_from_slice(&tail[i + 1..]);
        if serde_json::from_slice::<IgnoredAny>(&rest).is_ok() {
            return read_head(&rest);
        }
    }
    Head::default()
}

impl Head {
    /// These fields, with those missing taken from `other`.
    pub fn or(self, other: Head) -> Head {
        Head {
            id: self.id.or(other.id),
            tool: self.tool.or(other.tool),
            batch: self.batch.or(other.batch),
            unique_key: self.unique_key.or(other.unique_key),
            result_ttl_s: self.result_ttl_s.or(other.result_ttl_s),
            enqueued_at: self.enqueued_at.or(other.enqueued_at),
            attempt: self.attempt.or(other.attempt),
            recoveries: self.recoveries.or(other.recoveries),
        }
    }
}

struct Fields<'a>(&'a mut Head);

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let text = |v: Value| v.as_str().map(str::to_owned);
        let small = |v: Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let h = &mut *self.0;
            match key.as_ref() {
                "id" => h.id = text(map.next_value()?),
                "tool" => h.tool = text(map.next_value()?),
                "batch" => h.batch = text(map.next_value()?),
                "unique_key" => h.unique_key = text(map.next_value()?),
                "result_ttl_s" => h.result_ttl_s = map.next_value::<Value>()?.as_u64(),
                "enqueued_at" => h.enqueued_at = map.next_value::<Value>()?.as_u64(),
                "attempt" => h.attempt = small(map.next_value()?),
                "recoveries" => h.recoveries = small(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_before_the_cut_are_read() {
        let full = r#"{"id":"j\"1","batch":"b1","tool":"echo","result_ttl_s":60,"args":{"s":"xxxxxxxxxxxx"},"unique_key":"u"}"#;
        let cut = &full.as_bytes()[..full.find("xxxx").unwrap()];
        let h = read_head(cut);
        assert_eq!(h.id.as_deref(), Some("j\"1"));
        assert_eq!(h.batch.as_deref(), Some("b1"));
        assert_eq!(h.tool.as_deref(), Some("echo"));
        assert_eq!(h.result_ttl_s, Some(60));
        assert_eq!(h.unique_key, None, "after the cut");
        assert_eq!(read_head(full.as_bytes()).unique_key.as_deref(), Some("u"));
    }

    #[test]
    fn a_value_cut_in_the_middle_is_not_read() {
        let h = read_head(br#"{"tool":"echo","id":"abc"#);
        assert_eq!((h.tool.as_deref(), h.id), (Some("echo"), None));
    }

    /// Found by the `job_head` fuzz target: a head cut inside a number read
    /// the digits before the cut as the whole value (`60` as `6`), so an
    /// oversized job's dead result could get a 6 s lifetime instead of 60.
    #[test]
    fn a_number_cut_in_the_middle_is_not_read() {
        let full = br#"{"":"","tool":"","result_ttl_s":60,"args":{"":""},"u":""}"#;
        let cut = &full[..full.iter().position(|&b| b == b'6').unwrap() + 1];
        assert_eq!(read_head(cut).result_ttl_s, None);
        assert_eq!(read_head(full).result_ttl_s, Some(60));
        let h = read_head(br#"{"attempt":2,"enqueued_at":17000"#);
        assert_eq!((h.attempt, h.enqueued_at), (Some(2), None));
        assert_eq!(read_head(br#"{"attempt":-1e5"#), Head::default());
    }

    #[test]
    fn fields_after_the_last_top_level_comma_are_read_from_the_tail() {
        let full = r#"{"args":{"s":"x,"id":"no"","n":{"a":1,"id":"nested"}},"batch":"b7","id":"j9","meta":{"k":[1,2]},"tool":"echo"}"#;
        for cut in [10, 20, 30, 40] {
            let h = read_tail(&full.as_bytes()[cut..]);
            assert_eq!(h.id.as_deref(), Some("j9"), "cut at {cut}");
            assert_eq!(h.batch.as_deref(), Some("b7"));
            assert_eq!(h.tool.as_deref(), Some("echo"));
        }
        assert_eq!(read_tail(b"xxxx\"}"), Head::default());
        let head = Head {
            id: Some("h".into()),
            ..Head::default()
        };
        let merged = head.or(read_tail(full.as_bytes()));
        assert_eq!(
            (merged.id.as_deref(), merged.batch.as_deref()),
            (Some("h"), Some("b7"))
        );
    }

    #[test]
    fn anything_else_reads_as_nothing() {
        for p in [&b""[..], b"[1,2]", b"not json", b"\"s\"", b"{\"id\":7}"] {
            assert_eq!(read_head(p), Head::default(), "{p:?}");
        }
    }
}
