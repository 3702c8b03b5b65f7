//! OpenWeather's body, reduced to the compact output jobs receive.
//!
//! Only the fields an answer cannot do without are required; a body missing
//! one is a contract break upstream, so the error names the field and is
//! permanent (retrying would read the same body). `name`, `sys.country` and
//! `wind.deg` are legitimately absent for open-sea coordinates and calm air,
//! and come out as `null`.

use serde_json::{json, Value};

use super::args::Units;
use crate::tools::ToolError;

fn unexpected(detail: impl std::fmt::Display) -> ToolError {
    ToolError::Permanent(format!("unexpected response from weather API: {detail}"))
}

pub fn summarize(body: &[u8], units: Units) -> Result<Value, ToolError> {
    let body: Value = serde_json::from_slice(body).map_err(|_| unexpected("body is not JSON"))?;
    if !body.is_object() {
        return Err(unexpected("body is not a JSON object"));
    }
    Ok(json!({
        "city": optional_str(&body, "/name"),
        "country": optional_str(&body, "/sys/country"),
        "lat": number(&body, "/coord/lat")?,
        "lon": number(&body, "/coord/lon")?,
        "temperature": number(&body, "/main/temp")?,
        "feels_like": number(&body, "/main/feels_like")?,
        "humidity": number(&body, "/main/humidity")?,
        "pressure": number(&body, "/main/pressure")?,
        "wind_speed": number(&body, "/wind/speed")?,
        "wind_deg": body.pointer("/wind/deg").filter(|v| v.is_number()).cloned(),
        "description": string(&body, "/weather/0/description")?,
        "units": units.as_str(),
        "observed_at": integer(&body, "/dt")?,
    }))
}

fn required<'a>(body: &'a Value, pointer: &str) -> Result<&'a Value, ToolError> {
    body.pointer(pointer)
        .filter(|v| !v.is_null())
        .ok_or_else(|| unexpected(format!("missing {}", field_name(pointer))))
}

/// Numbers are passed through as they came, so integer fields such as
/// `humidity` stay integers in the output.
fn number(body: &Value, pointer: &str) -> Result<Value, ToolError> {
    let value = required(body, pointer)?;
    if value.is_number() {
        Ok(value.clone())
    } else {
        Err(unexpected(format!(
            "{} is not a number",
            field_name(pointer)
        )))
    }
}

fn integer(body: &Value, pointer: &str) -> Result<i64, ToolError> {
    required(body, pointer)?
        .as_i64()
        .ok_or_else(|| unexpected(format!("{} is not an integer", field_name(pointer))))
}

fn string(body: &Value, pointer: &str) -> Result<String, ToolError> {
    required(body, pointer)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| unexpected(format!("{} is not a string", field_name(pointer))))
}

fn optional_str(body: &Value, pointer: &str) -> Option<String> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `/weather/0/description` → `weather[0].description`, the way the
/// OpenWeather docs name fields.
fn field_name(pointer: &str) -> String {
    let mut name = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            name.push_str(&format!("[{segment}]"));
        } else {
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(segment);
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> Value {
        json!({
            "coord": {"lon": -0.1257, "lat": 51.5085},
            "weather": [{"id": 803, "main": "Clouds", "description": "broken clouds", "icon": "04d"}],
            "main": {"temp": 14.2, "feels_like": 13.6, "humidity": 77, "pressure": 1012},
            "wind": {"speed": 4.1, "deg": 240},
            "dt": 1_726_660_758,
            "sys": {"country": "GB"},
            "name": "London"
        })
    }

    fn message(err: ToolError) -> String {
        match err {
            ToolError::Permanent(message) => message,
            other => panic!("expected Permanent, got {other:?}"),
        }
    }

    #[test]
    fn keeps_the_useful_fields() {
        let out = summarize(london().to_string().as_bytes(), Units::Metric).unwrap();
        assert_eq!(out["city"], "London");
        assert_eq!(out["country"], "GB");
        assert_eq!(out["humidity"], 77);
        assert_eq!(out["description"], "broken clouds");
        assert_eq!(out["observed_at"], 1_726_660_758);
        assert_eq!(out["units"], "metric");
    }

    #[test]
    fn optional_fields_become_null() {
        let mut body = london();
        body["name"] = json!("");
        body.as_object_mut().unwrap().remove("sys");
        body["wind"].as_object_mut().unwrap().remove("deg");
        let out = summarize(body.to_string().as_bytes(), Units::Standard).unwrap();
        assert!(out["city"].is_null() && out["country"].is_null() && out["wind_deg"].is_null());
    }

    #[test]
    fn names_the_missing_or_mistyped_field() {
        let mut body = london();
        body["main"].as_object_mut().unwrap().remove("temp");
        let err = summarize(body.to_string().as_bytes(), Units::Metric).unwrap_err();
        assert_eq!(
            message(err),
            "unexpected response from weather API: missing main.temp"
        );

        let mut body = london();
        body["weather"] = json!([]);
        let err = summarize(body.to_string().as_bytes(), Units::Metric).unwrap_err();
        assert!(message(err).ends_with("missing weather[0].description"));

        let mut body = london();
        body["dt"] = json!("yesterday");
        let err = summarize(body.to_string().as_bytes(), Units::Metric).unwrap_err();
        assert!(message(err).ends_with("dt is not an integer"));

        let err = summarize(b"<html>", Units::Metric).unwrap_err();
        assert!(message(err).ends_with("body is not JSON"));
    }
}
