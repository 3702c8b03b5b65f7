//! The small text parsers: durations on the command line, rate limits,
//! queue specs, the side port's address, Redis URLs and their passwords.

use std::str::FromStr;
use std::time::Duration;

use super::Target;
use crate::spec::{mask_url, with_password, HttpAddr, QueueSpec, UrlParts};
use crate::tools::RateLimit;

pub const DURATION: Target = Target {
    name: "duration",
    dictionary: &[
        "ms",
        "s",
        "m",
        "min",
        "h",
        "d",
        ".",
        "0",
        "9",
        " ",
        "1e3",
        "-",
        "18446744073709551616",
        "99999999999999999999",
    ],
    max_len: 64,
    generate: None,
    check: check_duration,
};

pub const RATE: Target = Target {
    name: "rate_limit",
    dictionary: &[
        "/",
        "s",
        "sec",
        "second",
        "m",
        "min",
        "minute",
        "h",
        "hour",
        " ",
        "0",
        "4294967295",
        "4294967296",
        "+",
        "-",
    ],
    max_len: 64,
    generate: None,
    check: check_rate,
};

pub const SPEC: Target = Target {
    name: "spec",
    dictionary: &[
        "redis://",
        "rediss://",
        "unix://",
        "redis+unix://",
        "@",
        ":",
        "?",
        "&",
        "#",
        "%",
        "%40",
        "%3A",
        "%+1",
        "pass=",
        "password=",
        "PASS=",
        "[::1]",
        "127.0.0.1",
        ":6379",
        "/0",
        "=",
        "{",
        "}",
        "off",
        "OFF",
        "0.0.0.0:9464",
        "\n",
    ],
    max_len: 256,
    generate: None,
    check: check_spec,
};

/// A duration that parses is written back in whole nanoseconds and reads
/// back within a rounding error (the parser goes through `f64`).
fn check_duration(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(d) = crate::cli::parse_duration(text) else {
        return;
    };
    let written = format!("{}.{:09}s", d.as_secs(), d.subsec_nanos());
    let again = crate::cli::parse_duration(&written)
        .unwrap_or_else(|e| panic!("{text:?} -> {written:?} does not parse back: {e}"));
    let gap = again.abs_diff(d);
    let tolerance = Duration::from_nanos(1) + d.mul_f64(1e-15);
    assert!(
        gap <= tolerance,
        "{text:?} -> {d:?} -> {written:?} -> {again:?}"
    );
}

/// A rate limit that parses prints as text that parses to the same limit,
/// as itself and through serde (how configuration shows and re-reads it).
fn check_rate(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(rate) = RateLimit::from_str(text) else {
        return;
    };
    assert!(rate.max >= 1);
    let shown = rate.to_string();
    assert_eq!(
        RateLimit::from_str(&shown).ok(),
        Some(rate),
        "{text:?} shown as {shown:?}"
    );
    let json = serde_json::to_string(&rate).expect("serialises");
    let back: RateLimit = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, rate);
}

/// The first byte picks the parser. A queue spec or side-port address that
/// parses is written back as text that parses to the same value. Masking a
/// Redis URL is idempotent and hides its password: a password added to a
/// URL reads back as given, and the masked URL is the same whatever the
/// password was.
fn check_spec(input: &[u8]) {
    let Some((&which, rest)) = input.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 4 {
        0 => {
            if let Ok(spec) = QueueSpec::parse(&text) {
                let written = match spec.weight {
                    Some(w) => format!("{}={w}", spec.name),
                    None => spec.name.clone(),
                };
                assert_eq!(
                    QueueSpec::parse(&written),
                    Ok(spec),
                    "{text:?} as {written:?}"
                );
            }
        }
        1 => {
            if let Ok(addr) = HttpAddr::from_str(&text) {
                let shown = addr.to_string();
                assert_eq!(
                    HttpAddr::from_str(&shown),
                    Ok(addr),
                    "{text:?} as {shown:?}"
                );
            }
        }
        2 => {
            let masked = mask_url(&text);
            assert_eq!(mask_url(&masked), masked, "masking {text:?} twice");
        }
        _ => {
            let (url, password) = text.split_once('\n').unwrap_or((&text, "pw"));
            let (Ok(with), Ok(other)) = (
                with_password(url, password),
                with_password(url, "0ther-Pa55word"),
            ) else {
                return;
            };
            let read = UrlParts::parse(&with).and_then(|p| p.password());
            if !password.is_empty() {
                assert_eq!(
                    read.as_deref(),
                    Some(password),
                    "{url:?} + password -> {with:?}"
                );
                assert_eq!(mask_url(&with), mask_url(&other), "{with:?} masked");
            }
        }
    }
}
