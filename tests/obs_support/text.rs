//! A small parser for the Prometheus text exposition format, so tests read
//! `/metrics` the way Prometheus does (by name and label set) instead of
//! matching substrings that depend on label order.

use std::collections::BTreeMap;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of a scrape; comment and blank lines are skipped. Panics on
/// a line that is not valid exposition format, because that is a bug too.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).unwrap_or_else(|e| panic!("bad metrics line {l:?}: {e}")))
        .collect()
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    let value_text = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` and returns the labels and what follows `}`.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(tail) = s.strip_prefix('}') {
            return Ok((labels, tail));
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim().to_owned();
        let mut chars = s[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {key} value not quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                value.push(if c == 'n' { '\n' } else { c });
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(eq + 1 + i + 1);
                break;
            } else {
                value.push(c);
            }
        }
        let end = end.ok_or_else(|| format!("label {key} value not terminated"))?;
        labels.insert(key, value);
        s = &s[end..];
    }
}

/// The value of the one sample named `name` whose labels include `want`
/// (`None` when there is none; panics when several match, since the caller
/// asked for one series).
pub fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {want:?} matches {} series: {found:?}",
        found.len()
    );
    found.first().map(|s| s.value)
}

#[test]
fn parses_names_labels_escapes_and_special_values() {
    let text = "# HELP x y\n# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"uo\\\\te\"} 3\n\
                up 1\nh_bucket{le=\"+Inf\"} 7\nnan_metric NaN\n";
    let s = parse(text);
    assert_eq!(s.len(), 4);
    assert_eq!(value(&s, "x_total", &[("b", "q\"uo\\te")]), Some(3.0));
    assert_eq!(value(&s, "up", &[]), Some(1.0));
    assert_eq!(value(&s, "h_bucket", &[("le", "+Inf")]), Some(7.0));
    assert!(value(&s, "nan_metric", &[]).unwrap().is_nan());
    assert_eq!(value(&s, "x_total", &[("a", "2")]), None);
}
