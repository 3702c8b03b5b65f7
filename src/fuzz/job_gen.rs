//! Job payloads built field by field: mostly well typed, sometimes not, in
//! any order, with unknown and duplicated fields, odd numbers and escapes,
//! and the recovery count some lead with.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

const STRINGS: &[&str] = &[
    r#""echo""#,
    r#""calculator""#,
    r#""j-1""#,
    r#""""#,
    r#""a\"b\\c""#,
    r#""\u00e9\ud83d\ude00""#,
    r#""tab\tnew\nline""#,
    r#""\u0000""#,
    r#""schedule:s:1700000000""#,
];

const INTEGERS: &[&str] = &[
    "0",
    "1",
    "3",
    "60",
    "1700000000000",
    "4294967295",
    "4294967296",
    "315360000",
    "315360001",
    "18446744073709551615",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1.0e2",
    "1E-7",
    "0.1",
    "1.5e300",
    "123456789012345678901234567890",
    "-9223372036854775809",
    "12345678901234567",
];

const SPACE: &[&str] = &["", "", "", " ", "\n", "\t "];

/// One payload.
pub fn payload(rng: &mut StdRng) -> Vec<u8> {
    let mut fields: Vec<String> = Vec::new();
    let mut field = |rng: &mut StdRng, key: &str, value: String| {
        let (a, b) = (SPACE.choose(rng), SPACE.choose(rng));
        fields.push(format!(
            "\"{key}\"{}:{}{value}",
            a.unwrap_or(&""),
            b.unwrap_or(&"")
        ));
    };
    let typed = |rng: &mut StdRng, pool: &[&str]| -> String {
        if rng.random_bool(0.85) {
            pool.choose(rng).copied().unwrap_or("0").to_owned()
        } else {
            value(rng, 1)
        }
    };
    if rng.random_bool(0.9) {
        let v = typed(rng, STRINGS);
        field(rng, "tool", v);
    }
    if rng.random_bool(0.9) {
        let v = if rng.random_bool(0.9) {
            object(rng, 0)
        } else {
            value(rng, 0)
        };
        field(rng, "args", v);
    }
    for key in ["id", "batch", "unique_key"] {
        if rng.random_bool(0.3) {
            let v = typed(rng, STRINGS);
            field(rng, key, v);
        }
    }
    for key in [
        "max_attempts",
        "timeout_ms",
        "run_at",
        "enqueued_at",
        "attempt",
        "result_ttl_s",
        "recoveries",
    ] {
        if rng.random_bool(0.25) {
            let v = typed(rng, INTEGERS);
            field(rng, key, v);
        }
    }
    if rng.random_bool(0.3) {
        let v = if rng.random_bool(0.8) {
            object(rng, 1)
        } else {
            value(rng, 1)
        };
        field(rng, "meta", v);
    }
    for key in ["wait_ms", "x", "\\u0074ool", "ID"] {
        if rng.random_bool(0.1) {
            let v = value(rng, 1);
            field(rng, key, v);
        }
    }
    // Shuffle, and now and then repeat a field.
    for i in (1..fields.len()).rev() {
        fields.swap(i, rng.random_range(0..=i));
    }
    if !fields.is_empty() && rng.random_bool(0.05) {
        let copy = fields[rng.random_range(0..fields.len())].clone();
        fields.push(copy);
    }
    let mut out = String::from("{");
    if rng.random_bool(0.1) {
        out.push_str(&format!("\"recoveries\":{},", rng.random_range(0..5)));
    }
    out.push_str(&fields.join(","));
    out.push('}');
    out.into_bytes()
}

fn object(rng: &mut StdRng, depth: usize) -> String {
    let n = rng.random_range(0..4);
    let entries: Vec<String> = (0..n)
        .map(|i| format!("\"k{i}\":{}", value(rng, depth + 1)))
        .collect();
    format!("{{{}}}", entries.join(","))
}

fn value(rng: &mut StdRng, depth: usize) -> String {
    match rng.random_range(0..7) {
        0 | 1 => NUMBERS.choose(rng).copied().unwrap_or("0").to_owned(),
        2 | 3 => STRINGS.choose(rng).copied().unwrap_or("\"\"").to_owned(),
        4 if depth < 3 => object(rng, depth),
        5 if depth < 3 => {
            let n = rng.random_range(0..3);
            let items: Vec<String> = (0..n).map(|_| value(rng, depth + 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => ["null", "true", "false"]
            .choose(rng)
            .copied()
            .unwrap_or("null")
            .to_owned(),
    }
}

/// The rewrite target's input: two parameter bytes, then a payload.
pub fn rewrite_input(rng: &mut StdRng) -> Vec<u8> {
    let mut out = vec![rng.random(), rng.random()];
    out.extend(payload(rng));
    out
}
