//! The job's `args`, checked once into a typed request.
//!
//! `validate` and `call` share this parser, so a job that passed validation
//! cannot fail differently at run time, and `call` stays safe when an
//! embedding program skips validation.

use serde_json::{Map, Value};

use crate::tools::ToolError;

/// Longer names are not places; the cap also bounds what a job can make us
/// send upstream and echo in errors.
pub const MAX_CITY_CHARS: usize = 100;
/// OpenWeather codes are 2–5 characters (`en`, `zh_cn`); a little slack.
const MAX_LANG_CHARS: usize = 10;
const FIELDS: [&str; 5] = ["city", "lat", "lon", "units", "lang"];

#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    City(String),
    Coords { lat: f64, lon: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Units {
    #[default]
    Metric,
    Imperial,
    Standard,
}

impl Units {
    pub fn as_str(self) -> &'static str {
        match self {
            Units::Metric => "metric",
            Units::Imperial => "imperial",
            Units::Standard => "standard",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub location: Location,
    pub units: Units,
    pub lang: Option<String>,
}

fn invalid(message: impl Into<String>) -> ToolError {
    ToolError::InvalidArgs(message.into())
}

pub fn parse(args: &Value) -> Result<Request, ToolError> {
    let Value::Object(map) = args else {
        return Err(invalid(
            r#"weather expects an object such as {"city": "London"} or {"lat": 51.5, "lon": -0.13}"#,
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "unknown field `{}`: expected city, lat, lon, units or lang",
            shorten(unknown)
        )));
    }
    Ok(Request {
        location: location(map)?,
        units: units(map)?,
        lang: lang(map)?,
    })
}

/// Explicit `null` counts as absent: many producers serialise unset options
/// that way.
fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).filter(|v| !v.is_null())
}

fn location(map: &Map<String, Value>) -> Result<Location, ToolError> {
    let city = field(map, "city");
    let lat = field(map, "lat");
    let lon = field(map, "lon");
    match (city, lat, lon) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            Err(invalid("give either city or lat/lon, not both"))
        }
        (Some(city), None, None) => city_name(city).map(Location::City),
        (None, Some(lat), Some(lon)) => Ok(Location::Coords {
            lat: coordinate(lat, "lat", 90.0)?,
            lon: coordinate(lon, "lon", 180.0)?,
        }),
        (None, Some(_), None) | (None, None, Some(_)) => {
            Err(invalid("lat and lon must be given together"))
        }
        (None, None, None) => Err(invalid("missing location: give city, or lat and lon")),
    }
}

fn city_name(value: &Value) -> Result<String, ToolError> {
    let city = value
        .as_str()
        .ok_or_else(|| invalid("city must be a string"))?
        .trim();
    if city.is_empty() {
        return Err(invalid("city must not be empty"));
    }
    let chars = city.chars().count();
    if chars > MAX_CITY_CHARS {
        return Err(invalid(format!(
            "city must be at most {MAX_CITY_CHARS} characters (got {chars})"
        )));
    }
    if city.chars().any(char::is_control) {
        return Err(invalid("city must not contain control characters"));
    }
    Ok(city.to_owned())
}

fn coordinate(value: &Value, name: &str, limit: f64) -> Result<f64, ToolError> {
    let number = value
        .as_f64()
        .ok_or_else(|| invalid(format!("{name} must be a number")))?;
    if !(-limit..=limit).contains(&number) {
        return Err(invalid(format!(
            "{name} must be between -{limit} and {limit} (got {number})"
        )));
    }
    Ok(number)
}

fn units(map: &Map<String, Value>) -> Result<Units, ToolError> {
    let Some(value) = field(map, "units") else {
        return Ok(Units::default());
    };
    match value.as_str() {
        Some("metric") => Ok(Units::Metric),
        Some("imperial") => Ok(Units::Imperial),
        Some("standard") => Ok(Units::Standard),
        Some(other) => Err(invalid(format!(
            "units must be metric, imperial or standard (got \"{}\")",
            shorten(other)
        ))),
        None => Err(invalid("units must be a string")),
    }
}

fn lang(map: &Map<String, Value>) -> Result<Option<String>, ToolError> {
    let Some(value) = field(map, "lang") else {
        return Ok(None);
    };
    let lang = value
        .as_str()
        .ok_or_else(|| invalid("lang must be a string"))?;
    let well_formed = !lang.is_empty()
        && lang.len() <= MAX_LANG_CHARS
        && lang
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !well_formed {
        return Err(invalid(format!(
            "lang must be a short language code such as \"en\" or \"zh_cn\" (got \"{}\")",
            shorten(lang)
        )));
    }
    Ok(Some(lang.to_owned()))
}

/// Echoing user input helps the producer find the mistake; capping it keeps
/// a hostile payload from bloating the dead set.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error(args: Value) -> String {
        match parse(&args) {
            Err(ToolError::InvalidArgs(message)) => message,
            other => panic!("expected InvalidArgs for {args}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_city_with_options() {
        let req =
            parse(&json!({"city": " São Paulo ", "units": "imperial", "lang": "pt_br"})).unwrap();
        assert_eq!(req.location, Location::City("São Paulo".into()));
        assert_eq!(req.units, Units::Imperial);
        assert_eq!(req.lang.as_deref(), Some("pt_br"));
    }

    #[test]
    fn accepts_coordinates_and_defaults_to_metric() {
        let req = parse(&json!({"lat": -33.87, "lon": 151, "lang": null})).unwrap();
        assert_eq!(
            req.location,
            Location::Coords {
                lat: -33.87,
                lon: 151.0
            }
        );
        assert_eq!(req.units, Units::Metric);
        assert_eq!(req.lang, None);
        assert!(parse(&json!({"lat": 90, "lon": -180})).is_ok());
    }

    #[test]
    fn rejects_bad_shapes_with_clear_messages() {
        assert!(error(json!("London")).contains("expects an object"));
        assert_eq!(
            error(json!({})),
            "missing location: give city, or lat and lon"
        );
        assert_eq!(error(json!({"city": 42})), "city must be a string");
        assert_eq!(error(json!({"city": "  "})), "city must not be empty");
        assert!(error(json!({"city": "x".repeat(101)})).contains("at most 100"));
        assert!(parse(&json!({"city": "x".repeat(100)})).is_ok());
        assert!(error(json!({"city": "a\nb"})).contains("control"));
        assert_eq!(
            error(json!({"city": "Paris", "lat": 1, "lon": 2})),
            "give either city or lat/lon, not both"
        );
        assert_eq!(
            error(json!({"lat": 1})),
            "lat and lon must be given together"
        );
        assert_eq!(error(json!({"lat": "1", "lon": 2})), "lat must be a number");
        assert_eq!(
            error(json!({"lat": 91, "lon": 0})),
            "lat must be between -90 and 90 (got 91)"
        );
        assert!(
            error(json!({"lat": 0, "lon": -180.5})).contains("lon must be between -180 and 180")
        );
        assert!(error(json!({"city": "Oslo", "units": "kelvin"})).contains("\"kelvin\""));
        assert_eq!(
            error(json!({"city": "Oslo", "units": 1})),
            "units must be a string"
        );
        assert_eq!(
            error(json!({"city": "Oslo", "lang": 7})),
            "lang must be a string"
        );
        assert!(error(json!({"city": "Oslo", "lang": "en&x=1"})).contains("short language code"));
        assert!(error(json!({"city": "Oslo", "citty": "x"})).contains("unknown field `citty`"));
    }
}
