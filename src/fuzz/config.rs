//! The configuration loader: a TOML file and `TOOLQ_*` variables, through
//! figment, the unknown-key check and validation.
//!
//! The input is the file; its comment lines `#env NAME=VALUE` are the
//! environment (comments, so they leave the TOML as it is).

use std::path::PathBuf;

use super::Target;
use crate::config::load_with_env;

/// A password the inputs carry only in secret places (URL passwords, API
/// keys); it must never show in an error or in the loaded configuration's
/// `Debug`.
const SECRET: &str = "S3cr3tPa55w0rd";

/// The whole lines that hold [`SECRET`] where a secret belongs.
const SECRET_LINES: &[&str] = &[
    "redis_url = \"redis://:S3cr3tPa55w0rd@localhost:6379\"",
    "redis_url = \"redis://user:S3cr3tPa55w0rd@[::1]:6380/2\"",
    "#env TOOLQ_REDIS_URL=redis://u:S3cr3tPa55w0rd@h:1",
    "api_key = \"S3cr3tPa55w0rd\"",
    "#env OPENWEATHER_API_KEY=S3cr3tPa55w0rd",
    "#env TOOLQ_TOOLS__WEATHER__API_KEY=S3cr3tPa55w0rd",
];

pub const CONFIG: Target = Target {
    name: "config",
    dictionary: &[
        "redis_url = \"redis://:S3cr3tPa55w0rd@localhost:6379\"\n",
        "redis_url = \"redis://user:S3cr3tPa55w0rd@[::1]:6380/2\"\n",
        "#env TOOLQ_REDIS_URL=redis://u:S3cr3tPa55w0rd@h:1\n",
        "[tools.weather]\napi_key = \"S3cr3tPa55w0rd\"\n",
        "#env OPENWEATHER_API_KEY=S3cr3tPa55w0rd\n",
        "#env TOOLQ_TOOLS__WEATHER__API_KEY=S3cr3tPa55w0rd\n",
        "#env TOOLQ_CONCURRENCY=",
        "#env TOOLQ_QUEUES=",
        "#env TOOLQ_HTTP_ADDR=",
        "#env TOOLQ_PROFILE=production\n",
        "#env TOOLQ_TOOLS__WEATHER__BASE_URL=",
        "#env TOOLQ_CONCURENCY=2\n",
        "concurrency = ",
        "queues = [\"high=5\", \"low\"]\n",
        "http_addr = \"off\"\n",
        "log_format = \"json\"\n",
        "max_attempts = 0\n",
        "result_ttl_s = 18446744073709551615\n",
        "heartbeat_timeout_ms = ",
        "[tools.calculator]\nrate_limit = \"60/min\"\n",
        "[tools.http.x]\nurl = \"http://127.0.0.1:1/\"\n",
        "[mcp.servers.s]\ncommand = [\"true\"]\n",
        "[serve]\naddr = \"127.0.0.1:0\"\n",
        "\n[",
        "]\n",
        " = ",
        "\"",
        "-1",
        "1e3",
        "true",
    ],
    max_len: 1024,
    generate: None,
    check: check_config,
};

/// Loading never panics and gives the same answer twice; a secret written
/// only in secret places shows neither in an error nor in the `Debug` of
/// what loaded.
fn check_config(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#env "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let file = scratch_file();
    std::fs::write(&file, text).expect("writes the scratch file");
    let shown = match load_with_env(&file, vars.clone()) {
        Ok(config) => format!("{config:?}"),
        Err(e) => e.to_string(),
    };
    let again = match load_with_env(&file, vars) {
        Ok(config) => format!("{config:?}"),
        Err(e) => e.to_string(),
    };
    let _ = std::fs::remove_file(&file);
    if let Some(dir) = file.parent() {
        let _ = std::fs::remove_dir(dir); // fails while another thread's file is there
    }
    assert_eq!(again, shown, "two loads differ");
    // Anywhere else (the value of another key, inside a multi-line string)
    // the secret is plain text that may well be shown.
    let elsewhere = text.contains("\"\"\"")
        || text.contains("'''")
        || text
            .lines()
            .any(|line| line.contains(SECRET) && !SECRET_LINES.contains(&line));
    if !elsewhere {
        assert!(!shown.contains(SECRET), "the secret shows: {shown}");
    }
}

/// One file per process and thread, under the temporary folder.
fn scratch_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("toolq-fuzz-config-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{:?}.toml", std::thread::current().id()).replace(['(', ')'], ""))
}
