//! The weather API's response body, as `summarize` reduces it.

use serde_json::Value;

use super::Target;
use crate::tools::weather::{summarize, Units};
use crate::tools::ToolError;

pub const RESPONSE: Target = Target {
    name: "weather_response",
    dictionary: &[
        r#""coord":{"lat":51.51,"lon":-0.13}"#,
        r#""main":{"temp":11.2,"feels_like":10.1,"humidity":81,"pressure":1012}"#,
        r#""wind":{"speed":4.1,"deg":240}"#,
        r#""weather":[{"description":"light rain"}]"#,
        r#""dt":1700000000"#,
        r#""name":"London""#,
        r#""sys":{"country":"GB"}"#,
        "null",
        "1e308",
        "-9223372036854775809",
        "18446744073709551615",
        "1.5",
        r#""""#,
        "[]",
        "{}",
    ],
    max_len: 2048,
    generate: None,
    check: check_response,
};

const FIELDS: [&str; 13] = [
    "city",
    "country",
    "lat",
    "lon",
    "temperature",
    "feels_like",
    "humidity",
    "pressure",
    "wind_speed",
    "wind_deg",
    "description",
    "units",
    "observed_at",
];

/// Any body: a summary or a permanent error, never a panic. A summary has
/// exactly the documented fields with their types, and survives
/// serialise -> parse unchanged (it is stored as the job's output).
fn check_response(input: &[u8]) {
    let units = [Units::Metric, Units::Imperial, Units::Standard][input.len() % 3];
    let out = match summarize(input, units) {
        Ok(out) => out,
        Err(ToolError::Permanent(_)) => return,
        Err(e) => panic!("a bad body gave {e:?}, not a permanent error"),
    };
    let obj = out.as_object().expect("the summary is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    for number in [
        "lat",
        "lon",
        "temperature",
        "feels_like",
        "humidity",
        "pressure",
        "wind_speed",
    ] {
        assert!(obj[number].is_number(), "{number}: {out}");
    }
    assert!(obj["observed_at"].is_i64(), "{out}");
    assert!(obj["description"].is_string(), "{out}");
    assert!(
        obj["wind_deg"].is_number() || obj["wind_deg"].is_null(),
        "{out}"
    );
    assert_eq!(obj["units"], units.as_str());
    let text = serde_json::to_vec(&out).expect("serialises");
    let back: Value = serde_json::from_slice(&text).expect("parses");
    assert_eq!(back, out);
}
