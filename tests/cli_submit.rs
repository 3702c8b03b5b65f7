//! The `toolq` binary's producer and operator commands, run as a real
//! process against a real redis-server and an in-process worker: `submit`
//! (with `--wait`, stdin, bad lines, duplicates, exit codes), `stats
//! --json`, and `dead list|retry|purge`; and every option of these
//! commands documented in `--help`, with examples.

mod common;

use std::collections::HashSet;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use toolq::queue::QueueKeys;
use toolq::tools::{JobContext, Registry, Tool, ToolError};

const WAIT: Duration = Duration::from_secs(60);

/// Runs `toolq ARGS` against `url`, with `stdin` piped in when given.
async fn toolq(url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolq"));
    cmd.args(args)
        .env_clear()
        .env("TOOLQ_REDIS_URL", url)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the toolq binary runs");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
        drop(pipe);
    }
    tokio::time::timeout(WAIT * 2, child.wait_with_output())
        .await
        .expect("toolq finishes")
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

async fn dbsize(url: &str) -> u64 {
    let mut con = raw(url).await;
    redis::cmd("DBSIZE").query_async(&mut con).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_lines_with_wait_yield_ten_thousand_right_results() {
    let server = redis();
    let q = queue_name("big");
    let worker = start_worker(config(&server.url(), &q, 32));
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("# 10,000 jobs\n\n");
    for i in 0..10_000 {
        text += &json!({"tool": "calculator", "args": {"expression": format!("{i} * 3")}, "meta": {"i": i}})
            .to_string();
        text.push('\n');
    }
    let file = write_file(&dir, "jobs.jsonl", &text);
    let o = toolq(
        &server.url(),
        &["submit", &file, "--queue", &q, "--wait"],
        None,
    )
    .await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let results = stdout_lines(&o);
    assert_eq!(results.len(), 10_000);
    let mut seen = HashSet::new();
    for r in &results {
        assert_eq!(r["status"], "succeeded", "{r}");
        let i = r["meta"]["i"].as_u64().unwrap();
        assert_eq!(r["output"]["result"], json!(i * 3), "{r}");
        assert!(seen.insert(i), "job {i} reported twice");
    }
    assert!(
        stderr(&o).contains("10000 succeeded, 0 dead"),
        "{}",
        stderr(&o)
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_named_and_nothing_is_enqueued_unless_skip_invalid() {
    let server = redis();
    let q = queue_name("bad");
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        &dir,
        "jobs.jsonl",
        concat!(
            "{\"tool\":\"echo\",\"args\":{\"n\":1}}\n",
            "{\"tool\":\"echo\",\"args\":{\n",
            "{\"args\":{\"n\":3}}\n",
            "# a comment\n",
            "{\"tool\":\"echo\",\"args\":[1,2]}\n",
            "{\"tool\":\"echo\",\"args\":{},\"max_attempts\":\"three\"}\n",
            "{\"tool\":\"echo\",\"args\":{\"n\":7}}\n",
        ),
    );
    let o = toolq(&server.url(), &["submit", &file, "--queue", &q], None).await;
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let err = stderr(&o);
    for n in [2, 3, 5, 6] {
        assert!(
            err.contains(&format!("line {n}: ")),
            "line {n} not named: {err}"
        );
    }
    for n in [1, 4, 7] {
        assert!(
            !err.contains(&format!("line {n}: ")),
            "line {n} named: {err}"
        );
    }
    assert!(err.contains("line 3: job has no `tool` field"), "{err}");
    assert!(
        err.contains("line 5: job field `args` must be an object"),
        "{err}"
    );
    assert_eq!(dbsize(&server.url()).await, 0, "nothing enqueued");

    let o = toolq(
        &server.url(),
        &[
            "submit",
            &file,
            "--queue",
            &q,
            "--dry-run",
            "--skip-invalid",
        ],
        None,
    )
    .await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(dbsize(&server.url()).await, 0, "a dry run enqueues nothing");

    let o = toolq(
        &server.url(),
        &["submit", &file, "--queue", &q, "--skip-invalid"],
        None,
    )
    .await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("line 6: "),
        "bad lines are still reported"
    );
    let mut con = raw(&server.url()).await;
    let keys = QueueKeys::new(&q);
    assert_eq!(llen(&mut con, &keys.pending).await, 2);
    // Without --wait the ids of the enqueued jobs are printed.
    let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    }

    let o = toolq(
        &server.url(),
        &["submit", "/no/such/file.jsonl", "--queue", &q],
        None,
    )
    .await;
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_works_and_ordered_prints_in_input_order() {
    let server = redis();
    let q = queue_name("stdin");
    let worker = start_worker(config(&server.url(), &q, 8));
    // Later lines finish first.
    let input: String = (0..5)
        .map(|i| {
            json!({"tool": "sleep", "args": {"ms": 500 - i * 100}, "meta": {"i": i}}).to_string()
                + "\n"
        })
        .collect();
    let order = |o: &Output| -> Vec<u64> {
        stdout_lines(o)
            .iter()
            .map(|r| r["meta"]["i"].as_u64().unwrap())
            .collect()
    };
    let o = toolq(
        &server.url(),
        &["submit", "-", "--queue", &q, "--wait", "--ordered"],
        Some(&input),
    )
    .await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(order(&o), vec![0, 1, 2, 3, 4]);
    let o = toolq(
        &server.url(),
        &["submit", "-", "--queue", &q, "--wait"],
        Some(&input),
    )
    .await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(order(&o), vec![4, 3, 2, 1, 0], "completion order");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_failed_timed_out_and_redis_down() {
    let server = redis();
    let q = queue_name("codes");
    let worker = start_worker(config(&server.url(), &q, 4));
    let input = concat!(
        "{\"tool\":\"echo\",\"args\":{\"ok\":true}}\n",
        "{\"tool\":\"fail\",\"args\":{\"permanent\":true}}\n",
    );
    let o = toolq(
        &server.url(),
        &["submit", "-", "--queue", &q, "--wait"],
        Some(input),
    )
    .await;
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(stdout_lines(&o).len(), 2);
    assert!(stderr(&o).contains("1 succeeded, 1 dead"), "{}", stderr(&o));

    let input = concat!(
        "{\"tool\":\"echo\",\"args\":{}}\n",
        "{\"tool\":\"sleep\",\"args\":{\"ms\":10000},\"id\":\"slow-1\"}\n",
    );
    let o = toolq(
        &server.url(),
        &["submit", "-", "--queue", &q, "--wait", "--timeout", "1"],
        Some(input),
    )
    .await;
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(stdout_lines(&o).len(), 1, "the finished job is printed");
    assert!(
        stderr(&o).contains("1 did not finish within 1 s"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("slow-1"), "{}", stderr(&o));
    worker.shutdown.force();
    let _ = worker.handle.await;

    let url = server.url();
    drop(server);
    let o = toolq(
        &url,
        &["submit", "-", "--queue", &q],
        Some("{\"tool\":\"echo\",\"args\":{}}\n"),
    )
    .await;
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let o = toolq(&url, &["stats"], None).await;
    assert_eq!(code(&o), 3, "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_skipped_and_counted() {
    let server = redis();
    let q = queue_name("dups");
    let input = concat!(
        "{\"tool\":\"echo\",\"args\":{\"n\":1},\"unique_key\":\"report-42\"}\n",
        "{\"tool\":\"echo\",\"args\":{\"n\":2},\"unique_key\":\"report-42\"}\n",
        "{\"tool\":\"echo\",\"args\":{\"n\":3}}\n",
        "{\"tool\":\"echo\",\"args\":{\"n\":4},\"unique_key\":\"report-42\"}\n",
    );
    let o = toolq(&server.url(), &["submit", "-", "--queue", &q], Some(input)).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("enqueued 2 job(s)"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2 skipped as duplicates"),
        "{}",
        stderr(&o)
    );
    // Still pending: all three unique lines are duplicates now.
    let o = toolq(&server.url(), &["submit", "-", "--queue", &q], Some(input)).await;
    assert!(
        stderr(&o).contains("3 skipped as duplicates"),
        "{}",
        stderr(&o)
    );
    let mut con = raw(&server.url()).await;
    assert_eq!(llen(&mut con, &QueueKeys::new(&q).pending).await, 3);
    // Once it has run, the key is free again.
    let worker = start_worker(config(&server.url(), &q, 4));
    let o = toolq(
        &server.url(),
        &["submit", "-", "--queue", &q, "--wait", "--timeout", "30"],
        Some(input),
    )
    .await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    worker.stop().await;
}

/// A tool that fails for good while `broken` is set, as a service with a
/// bad deploy would.
struct Flaky {
    broken: Arc<AtomicBool>,
}

#[async_trait]
impl Tool for Flaky {
    fn name(&self) -> &str {
        "flaky-service"
    }
    async fn call(&self, args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(ToolError::Permanent("service is misconfigured".into()));
        }
        Ok(json!({"fixed": true, "args": args}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_retry_brings_jobs_back_once_fixed_and_purge_drops_them() {
    let server = redis();
    let url = server.url();
    let q = queue_name("dead");
    let keys = QueueKeys::new(&q);
    let broken = Arc::new(AtomicBool::new(true));
    let mut registry = Registry::with_builtins();
    registry.register(Flaky {
        broken: broken.clone(),
    });
    let worker = start_worker_with(config(&url, &q, 4), registry);
    let mut con = raw(&url).await;

    let input =
        "{\"tool\":\"flaky-service\",\"args\":{\"n\":1},\"id\":\"job-a\",\"max_attempts\":3}\n";
    let o = toolq(&url, &["submit", "-", "--queue", &q, "--wait"], Some(input)).await;
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let o = toolq(&url, &["dead", "list", "--queue", &q, "--json"], None).await;
    let listed = stdout_lines(&o);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["job"]["id"], "job-a");
    let o = toolq(&url, &["dead", "list", "--queue", &q], None).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains("service is misconfigured"));

    broken.store(false, Ordering::SeqCst);
    let o = toolq(&url, &["dead", "retry", "job-a", "--queue", &q], None).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = wait_result(&mut con, &q, "job-a", WAIT).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["attempts"], 1, "attempts were reset");
    assert_eq!(r["output"]["fixed"], true);
    assert_eq!(zcard(&mut con, &keys.dead).await, 0);
    let o = toolq(&url, &["dead", "retry", "job-a", "--queue", &q], None).await;
    assert_eq!(code(&o), 1, "no such dead job any more");

    // Break it again: three more die; --all brings them all back.
    broken.store(true, Ordering::SeqCst);
    let input: String = (0..3)
        .map(|i| {
            json!({"tool": "flaky-service", "args": {}, "id": format!("b{i}")}).to_string() + "\n"
        })
        .collect();
    let o = toolq(
        &url,
        &["submit", "-", "--queue", &q, "--wait"],
        Some(&input),
    )
    .await;
    assert_eq!(code(&o), 1);
    assert_eq!(zcard(&mut con, &keys.dead).await, 3);
    let o = toolq(
        &url,
        &[
            "dead",
            "purge",
            "--older-than",
            "1h",
            "--queue",
            &q,
            "--yes",
        ],
        None,
    )
    .await;
    assert!(String::from_utf8_lossy(&o.stdout).contains("purged 0"));
    assert_eq!(zcard(&mut con, &keys.dead).await, 3);
    broken.store(false, Ordering::SeqCst);
    let o = toolq(&url, &["dead", "retry", "--all", "--queue", &q], None).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("retried 3"),
        "{o:?}"
    );
    for i in 0..3 {
        let r = wait_result(&mut con, &q, &format!("b{i}"), WAIT).await;
        assert_eq!(r["status"], "succeeded");
    }

    // Purge: everything older than a moment, then all.
    broken.store(true, Ordering::SeqCst);
    let o = toolq(
        &url,
        &["submit", "-", "--queue", &q, "--wait"],
        Some(&input),
    )
    .await;
    assert_eq!(code(&o), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let late = "{\"tool\":\"flaky-service\",\"args\":{},\"id\":\"late\"}\n";
    toolq(&url, &["submit", "-", "--queue", &q, "--wait"], Some(late)).await;
    assert_eq!(zcard(&mut con, &keys.dead).await, 4);
    let o = toolq(
        &url,
        &[
            "dead",
            "purge",
            "--older-than",
            "1s",
            "--queue",
            &q,
            "--yes",
        ],
        None,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("purged 3"),
        "{o:?}"
    );
    let left = dead_entries(&mut con, &q).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["job"]["id"], "late");
    let o = toolq(&url, &["dead", "purge", "--queue", &q, "--yes"], None).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains("purged 1"));
    assert_eq!(zcard(&mut con, &keys.dead).await, 0);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_json_matches_the_real_depths_and_workers() {
    let server = redis();
    let url = server.url();
    let (a, b) = (queue_name("stats-a"), queue_name("stats-b"));
    // Three jobs die in queue A while a worker serves it.
    let mut cfg = config(&url, &a, 4);
    cfg.queues = vec![a.clone(), b.clone()];
    let worker = start_worker(cfg);
    let dying = "{\"tool\":\"fail\",\"args\":{\"permanent\":true}}\n".repeat(3);
    let o = toolq(
        &url,
        &["submit", "-", "--queue", &a, "--wait"],
        Some(&dying),
    )
    .await;
    assert_eq!(code(&o), 1);
    worker.stop().await;
    // Now only B is served: A's jobs stay pending or delayed.
    let worker = start_worker(config(&url, &b, 4));
    let later = toolq::job::now_ms() + 3_600_000;
    let mut input = "{\"tool\":\"echo\",\"args\":{}}\n".repeat(5);
    input += &format!("{{\"tool\":\"echo\",\"args\":{{}},\"run_at\":{later}}}\n").repeat(2);
    let o = toolq(&url, &["submit", "-", "--queue", &a], Some(&input)).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let o = toolq(&url, &["stats", "--json"], None).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    let queue = |name: &str| -> Value {
        stats["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["queue"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("queue {name} missing from {stats}"))
    };
    let mut con = raw(&url).await;
    let keys = QueueKeys::new(&a);
    let sa = queue(&a);
    assert_eq!(sa["pending"], llen(&mut con, &keys.pending).await);
    assert_eq!(sa["delayed"], zcard(&mut con, &keys.delayed).await);
    assert_eq!(sa["dead"], zcard(&mut con, &keys.dead).await);
    assert_eq!(
        (&sa["pending"], &sa["delayed"], &sa["dead"], &sa["active"]),
        (&json!(5), &json!(2), &json!(3), &json!(0))
    );
    assert_eq!(sa["totals"]["dead"], 3);
    assert_eq!(sa["totals"]["succeeded"], 0);
    assert_eq!(
        sa["workers"],
        json!([]),
        "A's worker stopped and deregistered"
    );
    let sb = queue(&b);
    let workers = sb["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["info"]["queues"], json!([b]));
    assert!(workers[0]["info"]["pid"].as_u64().is_some());
    worker.stop().await;
}

/// Every subcommand.
const DOCUMENTED: &[&[&str]] = &[
    &["worker"],
    &["enqueue"],
    &["serve"],
    &["result"],
    &["demo"],
    &["bench"],
    &["job"],
    &["job", "show"],
    &["job", "cancel"],
    &["jobs"],
    &["jobs", "list"],
    &["queue"],
    &["queue", "pause"],
    &["queue", "resume"],
    &["queue", "delete"],
    &["submit"],
    &["stats"],
    &["dead"],
    &["dead", "list"],
    &["dead", "retry"],
    &["dead", "purge"],
    &["tools"],
    &["config"],
];

/// The description of an option or argument line of clap's help (`  --limit
/// <N>  Most jobs ... [default: 20]`), without the bracketed defaults, env
/// and possible values; `None` when the line is no option line.
fn description(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if line.len() == trimmed.len() || !trimmed.starts_with(['-', '<', '[']) {
        return None;
    }
    // A description's own continuation line (`[default: …]` on a line of
    // its own, or a `- value` of its possible values) is no option line.
    if [
        "[default: ",
        "[env: ",
        "[possible values: ",
        "[aliases: ",
        "- ",
    ]
    .iter()
    .any(|t| trimmed.starts_with(t))
    {
        return None;
    }
    let rest = trimmed.split_once("  ").map_or("", |(_, d)| d);
    let mut text = rest.trim().to_owned();
    for tag in ["[default: ", "[env: ", "[possible values: ", "[aliases: "] {
        while let Some(at) = text.find(tag) {
            let end = text[at..].find(']').map_or(text.len(), |e| at + e + 1);
            text.replace_range(at..end, "");
        }
    }
    Some(text.trim().to_owned())
}

#[tokio::test]
async fn every_option_has_a_description_and_every_help_an_example() {
    for args in DOCUMENTED {
        let mut argv = args.to_vec();
        argv.push("--help");
        let o = toolq("redis://127.0.0.1:1", &argv, None).await;
        assert_eq!(code(&o), 0, "{argv:?}: {}", stderr(&o));
        let help = String::from_utf8_lossy(&o.stdout);
        // clap puts a description on the next line when option names are
        // long: take that line then.
        let lines: Vec<&str> = help.lines().collect();
        let options: Vec<_> = lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                description(l).map(|d| match d.is_empty() {
                    true => (
                        *l,
                        lines
                            .get(i + 1)
                            .filter(|n| description(n).is_none())
                            .map_or(String::new(), |n| n.trim().to_owned()),
                    ),
                    false => (*l, d),
                })
            })
            .collect();
        assert!(!options.is_empty(), "{argv:?}: no options in\n{help}");
        for (line, text) in options {
            assert!(
                !text.is_empty(),
                "toolq {}: {:?} has no description",
                args.join(" "),
                line.trim()
            );
        }
        let example = help.split_once("\nExample").map(|(_, e)| {
            e.lines()
                .skip(1)
                .any(|l| l.trim_start().starts_with("toolq "))
        });
        assert_eq!(
            example,
            Some(true),
            "toolq {}: --help shows no example:\n{help}",
            args.join(" ")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_list_shows_a_header_aligned_rows_the_total_and_all_with_limit_zero() {
    let server = redis();
    let url = server.url();
    let q = queue_name("dead-list");
    let keys = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    let now = redis_time_ms(&mut con).await;
    // 630 dead jobs, one with a long tool name, the newest d629.
    for chunk in (0..630u64).collect::<Vec<_>>().chunks(100) {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(&keys.dead);
        for i in chunk {
            let tool = if *i == 628 {
                "a-rather-long-tool"
            } else {
                "fail"
            };
            let died = now - 630_000 + i * 1000;
            let entry = json!({
                "job": {"id": format!("d{i}"), "tool": tool, "attempt": 2},
                "error": {"kind": "permanent", "message": format!("boom {i}")},
                "worker": "w", "slot": i, "died_at": died,
            });
            zadd.arg(died).arg(entry.to_string());
        }
        let _: u64 = zadd.query_async(&mut con).await.unwrap();
    }

    let o = toolq(&url, &["dead", "list", "--queue", &q], None).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 20 + 1, "header, 20 rows, total:\n{text}");
    let header = lines[0];
    for column in ["DIED", "ID", "TOOL", "ATTEMPTS", "ERROR"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        lines[1].contains("d629") && lines[20].contains("d610"),
        "{text}"
    );
    // Aligned: every row starts its id, tool and error where the header's
    // column does.
    for column in ["ID", "TOOL", "ERROR"] {
        let at = header.find(column).unwrap();
        for row in &lines[1..21] {
            let cell = &row[at..];
            assert!(
                at > 0 && row.as_bytes()[at - 1] == b' ' && !cell.starts_with(' '),
                "{column} not aligned at {at} in {row:?}:\n{text}"
            );
        }
    }
    assert!(lines[2].contains("a-rather-long-tool"));
    assert!(lines[1].contains("permanent: boom 629"));
    assert!(
        lines[21].contains("20 of 630 dead jobs"),
        "the total: {:?}",
        lines[21]
    );

    let o = toolq(&url, &["dead", "list", "--queue", &q, "--limit", "0"], None).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 630 + 1, "--limit 0 lists all:\n{text}");
    assert!(lines[630].contains("d0 ") && lines[631].contains("630 dead job"));
    let o = toolq(
        &url,
        &["dead", "list", "--queue", &q, "--limit", "0", "--json"],
        None,
    )
    .await;
    let ids: HashSet<String> = stdout_lines(&o)
        .iter()
        .map(|e| e["job"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 630);
}

/// `--callback` enqueues its job once the batch's last job is settled,
/// with the counts (and says its id); a bad template is refused with what
/// is wrong, exit 2, and nothing enqueued. Lines carrying follow-ups run
/// them with the parent's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_callback_fires_with_the_counts_and_a_bad_one_is_refused() {
    let server = redis();
    let url = server.url();
    let q = queue_name("cbcli");
    let input = [
        json!({"tool": "calculator", "args": {"expression": "2*(3+4)"}, "id": "sum-1",
               "on_success": {"tool": "echo", "args": {"total": "$prev.output.result", "of": "$prev.id"}}}),
        json!({"tool": "fail", "args": {"permanent": true}}),
    ]
    .map(|j| j.to_string() + "\n")
    .concat();
    let bad = toolq(
        &url,
        &[
            "submit",
            "-",
            "--queue",
            &q,
            "--callback",
            r#"{"tool":"echo","args":{},"id":"x"}"#,
        ],
        Some(&input),
    )
    .await;
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("unknown field `id`"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(dbsize(&url).await, 0, "nothing enqueued");

    let worker = start_worker(config(&url, &q, 4));
    // With a catalog published, follow-ups naming a tool no worker serves
    // are refused by name, with where they are.
    let producer = toolq::producer::Producer::connect(&url, None).unwrap();
    eventually(WAIT, "the worker's catalog", || {
        let producer = producer.clone();
        async move { !producer.catalog().await.unwrap().is_empty() }
    })
    .await;
    let unknown = json!({"tool": "echo", "args": {},
        "on_success": {"tool": "echo", "args": {}, "on_failure": {"tool": "nope", "args": {}}}});
    let o = toolq(
        &url,
        &["submit", "-", "--queue", &q],
        Some(&format!("{unknown}\n")),
    )
    .await;
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("line 1: `on_success.on_failure`: no live worker serves tool `nope`"),
        "{}",
        stderr(&o)
    );
    let o = toolq(
        &url,
        &[
            "submit",
            "-",
            "--queue",
            &q,
            "--callback",
            r#"{"tool":"nope","args":{}}"#,
        ],
        Some(&input),
    )
    .await;
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`--callback`: no live worker serves tool `nope`"),
        "{}",
        stderr(&o)
    );
    assert_eq!(dbsize_queue(&url, &q).await, 0, "nothing enqueued");

    let callback = r#"{"tool":"echo","args":{"ok":"$batch.succeeded","dead":"$batch.dead","of":"$batch.total"}}"#;
    let o = toolq(
        &url,
        &[
            "submit",
            "-",
            "--queue",
            &q,
            "--wait",
            "--callback",
            callback,
        ],
        Some(&input),
    )
    .await;
    assert_eq!(code(&o), 1, "one job died: {}", stderr(&o));
    let said = stderr(&o);
    let id = said
        .split_whitespace()
        .find(|w| w.ends_with(":callback"))
        .unwrap_or_else(|| panic!("names the callback: {said}"))
        .to_owned();
    let mut con = raw(&url).await;
    let r = wait_result(&mut con, &q, &id, WAIT).await;
    assert_eq!(r["output"], json!({"ok": 1, "dead": 1, "of": 2}));
    let r = wait_result(&mut con, &q, "sum-1:on_success", WAIT).await;
    assert_eq!(r["output"], json!({"total": 14, "of": "sum-1"}));
    worker.stop().await;
}

/// Jobs pending on queue `q`.
async fn dbsize_queue(url: &str, q: &str) -> u64 {
    let mut con = raw(url).await;
    llen(&mut con, &QueueKeys::new(q).pending).await
}

/// A `--worker-bin` that is not there is refused before anything starts,
/// naming the flag and the path, not ten seconds later as a worker that
/// never registered.
#[tokio::test]
async fn bench_refuses_a_worker_bin_that_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("old").join("toolq");
    let missing = missing.to_str().unwrap();
    let o = toolq(
        "redis://127.0.0.1:1",
        &["bench", "--worker-bin", missing, "--runs", "1"],
        None,
    )
    .await;
    assert_ne!(code(&o), 0);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("--worker-bin {missing}")) && err.contains("No such file"),
        "{err}"
    );
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
