//! The job wire format: parsing, the head and tail reader of oversized
//! payloads, and the rewrite for the next attempt (with the recovery
//! script's textual bump of `recoveries` after it).

use serde_json::value::RawValue;

use super::{job_gen, Target};
use crate::job::{self, parse, read_head, read_tail, recoveries_of, rewrite_payload, Head, Job};

const DICTIONARY: &[&str] = &[
    r#""tool":"#,
    r#""args":{}"#,
    r#""id":"#,
    r#""max_attempts":"#,
    r#""timeout_ms":"#,
    r#""run_at":"#,
    r#""enqueued_at":"#,
    r#""attempt":"#,
    r#""result_ttl_s":"#,
    r#""meta":"#,
    r#""recoveries":"#,
    r#"{"recoveries":1,"#,
    r#""unique_key":"#,
    r#""batch":"#,
    r#""echo""#,
    r#""calculator""#,
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1.5e300",
    "-0",
    "1e400",
    "null",
    "true",
    r#""\u0000""#,
    r#""\ud83d\ude00""#,
    r#""\ud800""#,
    "[[[[",
    "{}",
    ",",
    ":",
];

pub const PARSE: Target = Target {
    name: "job_parse",
    dictionary: DICTIONARY,
    max_len: 2048,
    generate: Some(job_gen::payload),
    check: check_parse,
};

pub const REWRITE: Target = Target {
    name: "job_rewrite",
    dictionary: DICTIONARY,
    max_len: 2048,
    generate: Some(job_gen::rewrite_input),
    check: check_rewrite,
};

pub const HEAD: Target = Target {
    name: "job_head",
    dictionary: DICTIONARY,
    max_len: 1024,
    generate: Some(job_gen::payload),
    check: check_head,
};

/// No panic under any limits; a parsed job serialises to a payload that
/// parses back to the same job and serialises to the same bytes; the head
/// reader agrees with the parser on the fields a burial reads.
fn check_parse(input: &[u8]) {
    let small = job::ParseLimits {
        max_bytes: 64,
        max_depth: 2,
    };
    let _ = parse(input, small);
    let _ = recoveries_of(input);
    let _ = read_tail(input);
    let head = read_head(input);
    let Ok(parsed) = parse(input, job::ParseLimits::default()) else {
        return;
    };
    let text = serde_json::to_vec(&parsed).expect("a job serialises");
    let again = parse(&text, job::ParseLimits::default())
        .unwrap_or_else(|e| panic!("serialised job {:?} does not parse: {e}", lossy(&text)));
    assert_eq!(again, parsed, "parse -> serialise -> parse changed the job");
    assert_eq!(serde_json::to_vec(&again).expect("serialises"), text);
    assert_head_agrees(&head, &parsed, "head of the whole payload");
}

/// The fields a head reader found are the job's.
fn assert_head_agrees(head: &Head, job: &Job, what: &str) {
    let agrees = |read: bool, ok: bool, field: &str| {
        assert!(
            !read || ok,
            "{what}: `{field}` read as {head:?}, job has {job:?}"
        );
    };
    agrees(head.id.is_some(), head.id == job.id, "id");
    agrees(
        head.tool.is_some(),
        head.tool.as_deref() == Some(&job.tool),
        "tool",
    );
    agrees(head.batch.is_some(), head.batch == job.batch, "batch");
    agrees(
        head.unique_key.is_some(),
        head.unique_key == job.unique_key,
        "unique_key",
    );
    agrees(
        head.result_ttl_s.is_some(),
        head.result_ttl_s == job.result_ttl_s,
        "result_ttl_s",
    );
    agrees(
        head.enqueued_at.is_some(),
        head.enqueued_at == job.enqueued_at,
        "enqueued_at",
    );
    agrees(
        head.attempt.is_some(),
        head.attempt == Some(job.attempt),
        "attempt",
    );
}

/// Every cut of a valid payload: what the head (first bytes) and the tail
/// (last bytes) readers find is what the whole payload says, never a value
/// cut short (`"attempt":12` cut after the `1`).
fn check_head(input: &[u8]) {
    let Ok(full) = parse(input, job::ParseLimits::default()) else {
        let _ = read_head(input);
        let _ = read_tail(input);
        return;
    };
    if full.recoveries > 0 || has_duplicate_keys(input) {
        return; // two values for one field: which one a cut sees is moot
    }
    for cut in 0..=input.len() {
        assert_head_agrees(
            &read_head(&input[..cut]),
            &full,
            &format!("head cut at {cut}"),
        );
        assert_head_agrees(
            &read_tail(&input[cut..]),
            &full,
            &format!("tail from {cut}"),
        );
    }
}

fn has_duplicate_keys(input: &[u8]) -> bool {
    let Some(fields) = fields(input) else {
        return true;
    };
    let mut keys: Vec<_> = fields.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// An object's top-level fields in order, duplicates kept, values raw.
fn fields(input: &[u8]) -> Option<Vec<(String, &RawValue)>> {
    struct Ordered<'a>(Vec<(String, &'a RawValue)>);
    impl<'de> serde::Deserialize<'de> for Ordered<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Ordered<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Ordered<'de>, A::Error> {
                    let mut out = Vec::new();
                    while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                        out.push(entry);
                    }
                    Ok(Ordered(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<Ordered<'_>>(input)
        .ok()
        .map(|o| o.0)
}

/// The first bytes choose the rewrite's `id`, `attempt` and `recoveries`;
/// the rest is the payload. A rewrite keeps every other field's value
/// byte for byte, in order; sets `id` and `attempt` once each; leads with
/// `recoveries` when there are any; and what it writes parses to the same
/// job, also after the recovery script's textual bump.
fn check_rewrite(input: &[u8]) {
    let (params, payload) = input.split_at(input.len().min(2));
    let p = |i: usize| params.get(i).copied().unwrap_or(0);
    const IDS: [&str; 4] = ["j-1", "a\"b\\c", "é\n\u{1}", ""];
    let id = IDS[usize::from(p(0) % 4)];
    let attempt = [0, 1, 7, u32::MAX][usize::from(p(0) >> 6)];
    let recoveries = [0, 0, 1, 2, 41, u32::MAX - 1, 0, 3][usize::from(p(1) % 8)];
    let _ = recoveries_of(payload);
    let Ok(out) = rewrite_payload(payload, id, attempt, recoveries) else {
        assert!(fields(payload).is_none(), "an object was refused");
        return;
    };
    let before = fields(payload).expect("a rewritten payload was an object");
    let after = fields(out.as_bytes())
        .unwrap_or_else(|| panic!("rewrite wrote {out:?}, not a JSON object"));
    let managed = |k: &str| matches!(k, "id" | "attempt" | "recoveries");
    let others = |f: &[(String, &RawValue)]| -> Vec<(String, String)> {
        f.iter()
            .filter(|(k, _)| !managed(k))
            .map(|(k, v)| (k.clone(), v.get().to_owned()))
            .collect()
    };
    assert_eq!(
        others(&after),
        others(&before),
        "other fields changed: {out}"
    );
    let count = |k: &str| after.iter().filter(|(key, _)| key == k).count();
    assert_eq!((count("id"), count("attempt")), (1, 1), "{out}");
    assert_eq!(count("recoveries"), usize::from(recoveries > 0), "{out}");
    assert_eq!(recoveries_of(out.as_bytes()), recoveries, "{out}");
    if let Ok(job) = parse(payload, job::ParseLimits::default()) {
        let expected = Job {
            id: Some(id.to_owned()),
            attempt,
            recoveries,
            ..job
        };
        let rewritten = parse(out.as_bytes(), job::ParseLimits::default())
            .unwrap_or_else(|e| panic!("rewrite of a valid job does not parse: {e}: {out}"));
        assert_eq!(rewritten, expected, "{out}");
        if recoveries < u32::MAX - 1 {
            let bumped = lua_bump(&out);
            let recovered = parse(bumped.as_bytes(), job::ParseLimits::default())
                .unwrap_or_else(|e| panic!("recovered payload does not parse: {e}: {bumped}"));
            assert_eq!(
                recovered,
                Job {
                    recoveries: recoveries + 1,
                    ..expected
                },
                "{bumped}"
            );
        }
    }
}

/// `bump` of `queue/scripts/recover.lua`, in Rust: raise a leading
/// `"recoveries":N`, or prepend `"recoveries":1`.
fn lua_bump(payload: &str) -> String {
    if let Some(rest) = payload.strip_prefix("{\"recoveries\":") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let (Ok(n), Some(after)) = (
            rest[..digits].parse::<u64>(),
            rest[digits..].strip_prefix(','),
        ) {
            return format!("{{\"recoveries\":{},{after}", n + 1);
        }
    }
    let trimmed = payload.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let Some(body) = trimmed.strip_prefix('{') else {
        return payload.to_owned();
    };
    if body
        .trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c'])
        .starts_with('}')
    {
        format!("{{\"recoveries\":1{body}")
    } else {
        format!("{{\"recoveries\":1,{body}")
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
