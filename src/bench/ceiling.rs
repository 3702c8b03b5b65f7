//! What Redis itself does on this machine, measured with `redis-benchmark`
//! in the same run, so toolq's figures can be read as ratios of it.

use std::process::Command;

use super::procstat::cpu_seconds;

/// One `redis-benchmark` figure.
#[derive(Debug, Clone)]
pub struct Ceiling {
    pub label: String,
    pub ops_per_s: f64,
    /// redis-server's CPU per request while it ran, in µs (NaN when the
    /// server is not ours): steadier than ops/s on a shared machine, and
    /// what a job's µs of Redis compare with.
    pub redis_us_per_op: f64,
}

/// LPUSH/LPOP unpipelined and with `-P 16`, and `SET key value EX n` with
/// `-P 16` (one result write per job is the floor of any design).
pub fn measure(port: u16, requests: u64, redis_pid: Option<u32>) -> Vec<Ceiling> {
    let mut out = Vec::new();
    for pipeline in [1, 16] {
        for test in ["lpush", "lpop"] {
            let (rows, cpu) = run(port, requests, pipeline, &["-t", test], redis_pid);
            for (test, rps) in rows {
                out.push(Ceiling {
                    label: format!("{test} -P {pipeline}"),
                    ops_per_s: rps,
                    redis_us_per_op: cpu / requests as f64 * 1e6,
                });
            }
        }
    }
    let set = [
        "-r",
        "1000000",
        "SET",
        "toolq:bench:__rand_int__",
        "value",
        "EX",
        "60",
    ];
    let (rows, cpu) = run(port, requests, 16, &set, redis_pid);
    if let Some((_, rps)) = rows.into_iter().next() {
        out.push(Ceiling {
            label: "SET key value EX 60 -P 16".into(),
            ops_per_s: rps,
            redis_us_per_op: cpu / requests as f64 * 1e6,
        });
    }
    out
}

/// The figures of one `redis-benchmark` run, and the CPU seconds Redis
/// spent meanwhile (NaN when it is not ours).
fn run(
    port: u16,
    requests: u64,
    pipeline: u32,
    args: &[&str],
    redis_pid: Option<u32>,
) -> (Vec<(String, f64)>, f64) {
    let cpu = || redis_pid.and_then(cpu_seconds).unwrap_or(f64::NAN);
    let before = cpu();
    let output = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--csv",
            "-c",
            "50",
        ])
        .args(["-n", &requests.to_string(), "-P", &pipeline.to_string()])
        .args(args)
        .output();
    let spent = cpu() - before;
    let Ok(output) = output else {
        return (Vec::new(), f64::NAN);
    };
    (parse_csv(&String::from_utf8_lossy(&output.stdout)), spent)
}

/// Parses `"TEST","rps",...` lines of `redis-benchmark --csv`.
pub fn parse_csv(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split(',').map(|c| c.trim_matches('"'));
            let test = cols.next()?.to_owned();
            let rps: f64 = cols.next()?.parse().ok()?;
            Some((test, rps))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\"\n\"LPUSH\",\"123456.78\",\"0.2\"\n\"LPOP\",\"99.5\",\"0.1\"\n";
        let rows = parse_csv(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "LPUSH");
        assert!((rows[0].1 - 123456.78).abs() < 1e-6);
    }
}
