//! What the shipped binary is made of, checked on a running `toolq worker`:
//! it does without glibc's `libm.so.6` (its C math functions come from the
//! `libm` crate, `src/math_symbols.rs`), and the math it does is right.

mod common;

use std::time::Duration;

use common::process::{toolq, Toolq};
use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Every function the calculator takes from a math library, each through
/// the real binary, against the test process's own (glibc's) result. Both
/// libraries are within an ulp or so of the exact value, so they are
/// compared to 1e-15 relative, and at 0 exactly. The side port is on, so
/// the metrics upkeep, the other caller of these functions, runs too.
#[tokio::test]
async fn the_worker_loads_no_libm_and_computes_what_glibc_does() {
    let redis = redis();
    let q = queue_name("math");
    let mut cmd = toolq(&["worker", "--queue", &q, "--http-addr", "127.0.0.1:0"]);
    cmd.env("TOOLQ_REDIS_URL", redis.url());
    let worker = Toolq::spawn(cmd);
    worker.wait_for_stderr("starting worker", WAIT).await;

    let cases: [(&str, f64); 9] = [
        ("2^0.5", 2f64.powf(0.5)),
        ("1.0001^10000", 1.0001f64.powf(10000.0)),
        ("exp(2.5)", 2.5f64.exp()),
        ("ln(10)", 10f64.ln()),
        ("log10(2)", 2f64.log10()),
        ("sin(1)", 1f64.sin()),
        ("cos(1)", 1f64.cos()),
        ("tan(1)", 1f64.tan()),
        ("sin(0) + ln(1)", 0.0),
    ];
    let mut con = raw(&redis.url()).await;
    let jobs: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, (expression, _))| {
            json!({"id": format!("m{i}"), "tool": "calculator", "args": {"expression": expression}})
                .to_string()
        })
        .collect();
    lpush(&mut con, &q, &jobs).await;
    for (i, (expression, want)) in cases.iter().enumerate() {
        let doc = wait_result(&mut con, &q, &format!("m{i}"), WAIT).await;
        assert_eq!(doc["status"], "succeeded", "{expression}: {doc}");
        let got = doc["output"]["result"]
            .as_f64()
            .unwrap_or_else(|| panic!("{expression}: {doc}"));
        let off = (got - want).abs() / want.abs().max(f64::MIN_POSITIVE);
        assert!(
            (*want == 0.0 && got == 0.0) || off < 1e-15,
            "{expression}: {got} against {want}"
        );
    }
    // Out of range or undefined is still a clear error, not a number.
    for (id, expression) in [("big", "exp(1000)"), ("undefined", "ln(-1)")] {
        let job = json!({"id": id, "tool": "calculator", "args": {"expression": expression}});
        lpush(&mut con, &q, &[job.to_string()]).await;
        let doc = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(doc["status"], "dead", "{expression}: {doc}");
        assert_eq!(doc["error"]["kind"], "permanent", "{expression}: {doc}");
    }

    let maps = std::fs::read_to_string(format!("/proc/{}/maps", worker.pid()))
        .expect("the worker's /proc maps");
    assert!(
        maps.contains("libc.so"),
        "the maps were read from the wrong process:\n{maps}"
    );
    assert!(
        !maps.contains("libm.so"),
        "the worker mapped glibc's libm:\n{maps}"
    );
}
