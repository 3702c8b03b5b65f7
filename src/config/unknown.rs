//! Unknown keys. `deny_unknown_fields` on every section finds them, in the
//! files and in `TOOLQ_` variables alike (both are one tree to serde); here
//! they become a message naming where the key came from, with the nearest
//! known key as a suggestion ("did you mean `concurrency`?").

use figment::error::Kind;
use figment::value::Value;
use figment::Figment;
use strsim::damerau_levenshtein;

use super::variables::{variable_of, ENV_LABEL};
use super::{show, validate, ConfigError};

/// The first unknown key among figment's errors, if any: it is usually the
/// cause of whatever else went wrong.
pub(super) fn first(e: &figment::Error, figment: &Figment) -> Option<ConfigError> {
    e.clone().into_iter().find_map(|err| match &err.kind {
        Kind::UnknownField(field, expected) => Some(unknown_key(&err, figment, field, expected)),
        _ => None,
    })
}

fn unknown_key(
    err: &figment::Error,
    figment: &Figment,
    field: &str,
    expected: &[&str],
) -> ConfigError {
    let path = locate(figment, &err.path, field);
    let key = path.join(".");
    let origin = match figment.find_metadata(&key).or(err.metadata.as_ref()) {
        Some(m) => validate::origin(m, &key),
        None => "a configuration file".into(),
    };
    let from_env = origin.starts_with(ENV_LABEL);
    let hint = match suggest(&path, expected, from_env) {
        Some(k) if from_env => format!("did you mean `{k}` ({})?", variable_of(&k)),
        Some(k) => format!("did you mean `{k}`?"),
        None if !expected.is_empty() && expected.len() <= 6 => {
            let names: Vec<String> = expected.iter().map(|n| format!("`{n}`")).collect();
            format!("expected one of {}", names.join(", "))
        }
        None => "config/toolq.toml lists every key".into(),
    };
    ConfigError::UnknownKey { key, origin, hint }
}

/// The full path of the unknown `field`. serde's path ends with it, except
/// inside a flattened table (`[tools.<name>]`), where it stops at the
/// table: then the field is looked up in the values under that path.
fn locate(figment: &Figment, path: &[String], field: &str) -> Vec<String> {
    fn find(value: &Value, field: &str, at: &mut Vec<String>) -> bool {
        let Some(dict) = value.as_dict() else {
            return false;
        };
        if dict.contains_key(field) {
            at.push(field.to_owned());
            return true;
        }
        for (k, v) in dict {
            at.push(k.clone());
            if find(v, field, at) {
                return true;
            }
            at.pop();
        }
        false
    }
    let mut at = path.to_vec();
    if path.last().map(String::as_str) == Some(field) {
        return at;
    }
    let found = figment
        .find_value(&path.join("."))
        .is_ok_and(|v| find(&v, field, &mut at));
    if !found {
        at = path.to_vec();
        at.push(field.to_owned());
    }
    at
}

/// The known key nearest to the unknown `path`: a sibling spelt alike, the
/// same name in another section, or (from a variable) the key whose
/// variable is spelt alike (`TOOLQ_SERVE_ADDR` → `serve.addr`).
fn suggest(path: &[String], expected: &[&str], from_env: bool) -> Option<String> {
    let (field, parent) = path.split_last()?;
    let within = |name: &str| {
        let mut key = parent.to_vec();
        key.push(name.to_owned());
        key.join(".")
    };
    let limit = (field.chars().count() / 3).clamp(1, 3);
    let unknown = path.join(".");
    let mut best: Option<(usize, String)> = None;
    let mut consider = |distance: usize, key: String| {
        if distance <= limit && best.as_ref().is_none_or(|(d, _)| distance < *d) {
            best = Some((distance, key));
        }
    };
    for name in expected {
        consider(damerau_levenshtein(field, name), within(name));
    }
    for known in show::known_keys() {
        if from_env {
            let distance = damerau_levenshtein(&variable_of(&unknown), &variable_of(&known));
            consider(distance, known);
        } else if known.rsplit('.').next() == Some(field.as_str()) {
            consider(1, known);
        }
    }
    best.map(|(_, key)| key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::variables::Environment;
    use crate::config::{Explained, Overrides};

    /// Loads `toml` as the main file with `vars` as the environment.
    fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Explained, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("toolq.toml");
        std::fs::write(&main, toml).unwrap();
        let env = Environment::from_pairs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Explained::load(Some(&main), &Overrides::default(), &env)
    }

    fn unknown(toml: &str, vars: &[(&str, &str)]) -> (String, String, String) {
        match load(toml, vars) {
            Err(ConfigError::UnknownKey { key, origin, hint }) => (key, origin, hint),
            other => panic!("expected an unknown key, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_key_in_a_file_is_named_with_its_file_and_a_suggestion() {
        let (key, origin, hint) = unknown("concurency = 4\n", &[]);
        assert_eq!(key, "concurency");
        assert!(
            origin.starts_with("TOML file ") && origin.ends_with("toolq.toml"),
            "{origin}"
        );
        assert_eq!(hint, "did you mean `concurrency`?");
        let e = load("concurency = 4\n", &[]).unwrap_err().to_string();
        assert!(
            e.contains("unknown key `concurency`") && e.contains("did you mean"),
            "{e}"
        );
    }

    #[test]
    fn sections_check_their_keys_too() {
        let cases = [
            (
                "[serve]\nadr = \"127.0.0.1:1\"\n",
                "serve.adr",
                "serve.addr",
            ),
            (
                "[tools.weather]\nbase_ulr = \"x\"\n",
                "tools.weather.base_ulr",
                "tools.weather.base_url",
            ),
            (
                "[tools.http.upper]\nurll = \"http://h/\"\n",
                "tools.http.upper.urll",
                "tools.http.upper.url",
            ),
            (
                "[mcp.servers.files]\ncomand = [\"x\"]\n",
                "mcp.servers.files.comand",
                "mcp.servers.files.command",
            ),
            ("[mcp]\nserver = {}\n", "mcp.server", "mcp.servers"),
        ];
        for (toml, key, suggestion) in cases {
            let (k, _, hint) = unknown(toml, &[]);
            assert_eq!(k, key, "{toml}");
            assert_eq!(hint, format!("did you mean `{suggestion}`?"), "{toml}");
        }
        // Any other `[tools.<name>]` takes only `rate_limit` (a flattened
        // table: serde's path stops at `tools`).
        let toml = "[tools.echo]\nrate_limit = \"1/s\"\n[tools.calculator]\nrate_limt = \"5/s\"\n";
        let (key, origin, hint) = unknown(toml, &[]);
        assert_eq!(key, "tools.calculator.rate_limt");
        assert!(origin.starts_with("TOML file "), "{origin}");
        assert_eq!(hint, "did you mean `tools.calculator.rate_limit`?");
        let (key, origin, _) = unknown("", &[("TOOLQ_TOOLS__ECHO__RATE_LIMT", "5/s")]);
        assert_eq!(key, "tools.echo.rate_limt");
        assert_eq!(origin, "environment variable TOOLQ_TOOLS__ECHO__RATE_LIMT");
    }

    #[test]
    fn an_unknown_variable_is_named_with_a_suggestion() {
        let (key, origin, hint) = unknown("", &[("TOOLQ_CONCURENCY", "4")]);
        assert_eq!(key, "concurency");
        assert_eq!(origin, "environment variable TOOLQ_CONCURENCY");
        assert_eq!(hint, "did you mean `concurrency` (TOOLQ_CONCURRENCY)?");
        let (_, origin, hint) = unknown("", &[("TOOLQ_SERVE_ADDR", "127.0.0.1:1")]);
        assert_eq!(origin, "environment variable TOOLQ_SERVE_ADDR");
        assert_eq!(hint, "did you mean `serve.addr` (TOOLQ_SERVE__ADDR)?");
        let (key, _, _) = unknown("", &[("TOOLQ_TOOLS__WEATHER__APIKEY", "k")]);
        assert_eq!(key, "tools.weather.apikey");
        let (_, origin, _) = unknown("", &[("TOOLQ_SERVE__", "x")]);
        assert_eq!(origin, "environment variable TOOLQ_SERVE__");
    }

    #[test]
    fn variables_that_are_not_keys_are_let_through() {
        for var in super::super::OTHER_VARIABLES {
            if !var.ends_with("_FILE") && *var != "TOOLQ_PROFILE" {
                assert!(load("", &[(var, "1")]).is_ok(), "{var}");
            }
        }
        assert!(load(
            "",
            &[("TOOLQ_TEST_ANYTHING", "1"), ("TOOLQ_BENCH_JOBS", "9")]
        )
        .is_ok());
    }

    fn suggestion(key: &str, expected: &[&str], from_env: bool) -> Option<String> {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        suggest(&path, expected, from_env)
    }

    #[test]
    fn suggests_the_nearest_key() {
        let top = ["concurrency", "queues", "serve"];
        assert_eq!(
            suggestion("concurency", &top, false).as_deref(),
            Some("concurrency")
        );
        assert_eq!(suggestion("zzz", &top, false), None);
        assert_eq!(
            suggestion("serve.adr", &["addr", "no_auth"], false).as_deref(),
            Some("serve.addr")
        );
        assert_eq!(
            suggestion("tools.http.upper.urll", &["url", "method"], false).as_deref(),
            Some("tools.http.upper.url")
        );
    }

    #[test]
    fn finds_a_key_in_the_wrong_section_and_a_misspelt_variable() {
        assert_eq!(
            suggestion("jwks_file", &["concurrency"], false).as_deref(),
            Some("serve.jwks_file")
        );
        // TOOLQ_SERVE_ADDR: one underscore where nesting takes two.
        assert_eq!(
            suggestion("serve_addr", &["concurrency", "serve"], true).as_deref(),
            Some("serve.addr")
        );
    }
}
