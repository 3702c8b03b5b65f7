//! The operator console (`/ui`) in a real browser: headless Chromium driven
//! over WebDriver against a live gateway and worker processes on a test
//! Redis. Each test signs in, loads the pages, acts, and checks each
//! action's effect in Redis; forged requests (a read-only token acting, a
//! form without its CSRF token) are sent with a plain HTTP client. Every
//! page visited is saved as `target/console-screenshots/<page>.png`; no
//! assertion looks at pixels.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::time::Duration;

use browser::Browser;
use common::fault_process::spawn_worker_process;
use common::gateway::*;
use common::*;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use toolq::job::Job;
use toolq::producer::{BatchOptions, JobState, Producer};
use toolq::queue::QueueKeys;

const WAIT: Duration = Duration::from_secs(30);

fn admin_token() -> String {
    token(&json!({"tools": ["*"], "queues": ["*"], "results": true, "admin": true}))
}

/// An HTTP client that shows redirects instead of following them.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

async fn enqueue(
    p: &Producer,
    queue: &str,
    tool: &str,
    args: Value,
    max_attempts: Option<u32>,
) -> String {
    let mut job = Job::new(tool, args);
    job.max_attempts = max_attempts;
    p.enqueue(queue, job).await.expect("enqueued")
}

/// The value of the first `name="csrf"` field of a page.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// `name=value` of the `Set-Cookie` named `name`.
fn set_cookie<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// Signs in through the login form as a browser would, without one: the
/// session cookie (`name=value`), or the refused answer.
async fn sign_in(gw: &GatewayProcess, token: &str) -> Result<String, reqwest::Response> {
    let form = http().get(gw.url("/ui/login")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let anchor = set_cookie(&form, "toolq_login")
        .expect("the login form sets its anchor cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = csrf_of(&form.text().await.unwrap());
    let r = http()
        .post(gw.url("/ui/login"))
        .header(COOKIE, anchor)
        .form(&[
            ("token", token),
            ("csrf", csrf.as_str()),
            ("next", "/ui/queues"),
        ])
        .send()
        .await
        .unwrap();
    if r.status() != 303 {
        return Err(r);
    }
    let cookie = set_cookie(&r, "toolq_session").expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/ui"),
        "{cookie}"
    );
    let max_age: u64 = cookie
        .split("Max-Age=")
        .nth(1)
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.parse().ok())
        .expect("the session cookie expires");
    assert!(
        (1..=300).contains(&max_age),
        "ends with the token: {cookie}"
    );
    Ok(cookie.split(';').next().unwrap().to_owned())
}

/// A console page's HTML with `cookie`, checked to be 200.
async fn page(gw: &GatewayProcess, cookie: &str, path: &str) -> String {
    let r = http()
        .get(gw.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

async fn post(
    gw: &GatewayProcess,
    cookie: Option<&str>,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = http().post(gw.url(path)).form(form);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.unwrap()
}

/// Signs the browser in with `token` through the login page.
async fn browser_sign_in(b: &Browser, token: &str, screenshot: bool) {
    b.open("/ui/queues").await;
    assert!(
        b.path().await.starts_with("/ui/login?next="),
        "{}",
        b.path().await
    );
    if screenshot {
        b.screenshot("login").await;
    }
    b.fill("#token", token).await;
    b.click("#sign-in").await;
    assert_eq!(b.path().await, "/ui/queues");
}

#[tokio::test]
async fn an_admin_signs_in_browses_every_page_and_each_action_changes_redis() {
    let redis = redis();
    let url = redis.url();
    let gw = start_gateway(&url, &[], &[]).await;
    let worker = start_worker_for(&gw, &url).await;
    // Jobs that die, on a queue of their own with its own worker.
    let doomed = queue_name("doomed");
    let doomed_worker = spawn_worker_process(&url, &doomed, 2, &[]);
    // A queue no worker serves: its jobs stay pending.
    let idle = queue_name("idle");
    let producer = Producer::connect(&url, None).unwrap();
    let mut con = raw(&url).await;

    let echo_a = enqueue(&producer, &idle, "echo", json!({"text": "a"}), None).await;
    enqueue(&producer, &idle, "echo", json!({"text": "b"}), None).await;
    enqueue(
        &producer,
        &idle,
        "calculator",
        json!({"expression": "6*7"}),
        None,
    )
    .await;
    for _ in 0..2 {
        enqueue(
            &producer,
            &doomed,
            "fail",
            json!({"permanent": true}),
            Some(1),
        )
        .await;
    }
    let retryable = enqueue(&producer, &doomed, "fail", json!({"times": 3}), Some(1)).await;
    let dead_key = QueueKeys::new(&doomed).dead;
    eventually(WAIT, "three dead jobs", || {
        let mut con = con.clone();
        let key = dead_key.clone();
        async move { zcard(&mut con, &key).await == 3 }
    })
    .await;
    let kinds: Vec<String> = dead_entries(&mut con, &doomed)
        .await
        .iter()
        .map(|e| e["error"]["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    let retryable_kind = dead_entries(&mut con, &doomed)
        .await
        .iter()
        .find(|e| e["job"]["id"] == retryable.as_str())
        .map(|e| e["error"]["kind"].as_str().unwrap().to_owned())
        .unwrap();
    let kind_count = kinds.iter().filter(|k| **k == retryable_kind).count();
    assert!(kind_count < 3, "two error kinds to filter by: {kinds:?}");
    // A long job, running on the default queue's worker.
    let sleeper = enqueue(&producer, "default", "sleep", json!({"ms": 60_000}), None).await;
    eventually(WAIT, "the sleep job running", || {
        let p = producer.clone();
        async move {
            p.queue_stats("default", Duration::from_secs(30))
                .await
                .unwrap()
                .active
                == 1
        }
    })
    .await;

    let b = Browser::start(&gw.base).await;
    browser_sign_in(&b, &admin_token(), true).await;
    assert_eq!(b.text("#subject").await, "tester");
    assert_eq!(b.text("#rights").await, "admin");

    // Queues: depth by state.
    let idle_row = format!("tr[data-queue='{idle}']");
    let doomed_row = format!("tr[data-queue='{doomed}']");
    assert_eq!(
        b.text(&format!("{idle_row} [data-depth=pending]")).await,
        "3"
    );
    assert_eq!(
        b.text(&format!("{doomed_row} [data-depth=dead]")).await,
        "3"
    );
    assert_eq!(
        b.text("tr[data-queue='default'] [data-depth=running]")
            .await,
        "1"
    );
    b.screenshot("queues").await;

    // Workers: both processes, with their registration and load.
    b.click("nav a[href='/ui/workers']").await;
    let rows = b.all("#workers tbody tr").await;
    assert_eq!(rows.len(), 2, "two live workers");
    let pids: Vec<String> = {
        let mut v = Vec::new();
        for cell in b.all("#workers [data-field=pid]").await {
            v.push(cell.text().await.unwrap());
        }
        v
    };
    assert!(pids.contains(&worker.pid().to_string()), "{pids:?}");
    let mut in_flight = 0;
    for cell in b.all("#workers [data-field=in-flight]").await {
        in_flight += cell.text().await.unwrap().parse::<u64>().unwrap();
    }
    assert_eq!(in_flight, 1, "the sleep job is in flight");
    assert_eq!(
        b.text("#workers [data-field=version]").await,
        env!("CARGO_PKG_VERSION")
    );
    b.screenshot("workers").await;

    // Job browser: pending jobs, then filtered by tool.
    b.open(&format!("/ui/queues/{idle}/jobs?state=pending"))
        .await;
    assert_eq!(b.all("#jobs tbody tr").await.len(), 3);
    b.fill("#tool", "echo").await;
    b.click("#apply").await;
    assert_eq!(b.all("#jobs tbody tr").await.len(), 2);
    assert!(b.path().await.contains("tool=echo"));
    b.screenshot("jobs-pending").await;

    // A pending job's page, and cancelling it.
    b.click(&format!("tr[data-job='{echo_a}'] a")).await;
    assert_eq!(b.text("#job-state").await, "pending");
    assert!(b.text("#job-payload").await.contains("\"text\": \"a\""));
    b.screenshot("job").await;
    b.click("#cancel").await;
    assert!(
        b.text("#notice").await.contains("cancelled"),
        "{}",
        b.text("#notice").await
    );
    assert_eq!(b.text("#job-state").await, "cancelled");
    assert!(!pending_ids(&mut con, &idle).await.contains(&echo_a));
    assert_eq!(pending_ids(&mut con, &idle).await.len(), 2);

    // Cancelling the running job: its worker stops it.
    b.open("/ui/queues/default/jobs?state=running").await;
    b.click(&format!("tr[data-job='{sleeper}'] a")).await;
    assert_eq!(b.text("#job-state").await, "running");
    b.click("#cancel").await;
    let doc = wait_result(&mut con, "default", &sleeper, WAIT).await;
    assert_eq!(doc["status"], "cancelled", "{doc}");

    // A job's progress, as its tool last reported it.
    let stepper = enqueue(
        &producer,
        "default",
        "progress",
        json!({"steps": 10, "ms": 5000}),
        None,
    )
    .await;
    let progress_key = QueueKeys::new("default").progress(&stepper);
    eventually(WAIT, "the job's first progress report", || {
        let mut con = con.clone();
        let key = progress_key.clone();
        async move { exists(&mut con, &key).await }
    })
    .await;
    b.open(&format!("/ui/queues/default/jobs/{stepper}")).await;
    let shown = b.text("#job-progress").await;
    assert!(
        shown.contains("% step ") && shown.contains(" of 10"),
        "{shown}"
    );
    b.screenshot("job-progress").await;

    // Pause: the key workers read; dead jobs retried meanwhile stay pending.
    b.open("/ui/queues").await;
    b.click(&format!("{doomed_row} button[data-action=pause]"))
        .await;
    assert!(b.text("#notice").await.contains("paused"));
    b.find(&format!("{doomed_row} [data-state=paused]")).await;
    let paused_key = QueueKeys::new(&doomed).paused;
    assert!(exists(&mut con, &paused_key).await);
    // Workers learn of it with their heartbeat: wait until this one has.
    eventually(WAIT, "the worker to see the pause", || {
        let seen = doomed_worker.log_lines("queue paused") > 0;
        async move { seen }
    })
    .await;

    // Dead jobs: listed, filtered by error kind, one retried, then all.
    b.open(&format!("/ui/queues/{doomed}/jobs?state=dead"))
        .await;
    assert_eq!(b.all("#jobs tbody tr").await.len(), 3);
    b.screenshot("jobs-dead").await;
    b.fill("#error_kind", &retryable_kind).await;
    b.click("#apply").await;
    assert_eq!(b.all("#jobs tbody tr").await.len(), kind_count);
    b.click(&format!(
        "tr[data-job='{retryable}'] button[data-action=retry]"
    ))
    .await;
    assert!(
        b.text("#notice").await.contains("1 dead job"),
        "{}",
        b.text("#notice").await
    );
    assert_eq!(zcard(&mut con, &dead_key).await, 2);
    assert_eq!(
        pending_ids(&mut con, &doomed).await,
        vec![retryable.clone()]
    );
    b.click("#retry-all").await;
    assert!(b.text("#notice").await.contains("2 dead job"));
    assert_eq!(zcard(&mut con, &dead_key).await, 0);
    assert_eq!(pending_ids(&mut con, &doomed).await.len(), 3);

    // Resume: the worker takes them again, and they die again.
    b.open("/ui/queues").await;
    b.click(&format!("{doomed_row} button[data-action=resume]"))
        .await;
    assert!(b.text("#notice").await.contains("resumed"));
    assert!(!exists(&mut con, &paused_key).await);
    eventually(WAIT, "the retried jobs dead again", || {
        let mut con = con.clone();
        let key = dead_key.clone();
        async move { zcard(&mut con, &key).await == 3 }
    })
    .await;

    // Purge, once confirmed.
    b.open(&format!("/ui/queues/{doomed}/jobs?state=dead"))
        .await;
    b.tick("#purge-confirm").await;
    b.click("#purge").await;
    assert!(
        b.text("#notice").await.contains("3 dead job(s) purged"),
        "{}",
        b.text("#notice").await
    );
    assert_eq!(zcard(&mut con, &dead_key).await, 0);
    b.close().await;
}

#[tokio::test]
async fn a_read_only_token_may_look_but_not_act_and_every_form_needs_its_csrf_token() {
    let redis = redis();
    let url = redis.url();
    let gw = start_gateway(&url, &[], &[]).await;
    let queue = queue_name("watched");
    let producer = Producer::connect(&url, None).unwrap();
    let mut con = raw(&url).await;
    let id = enqueue(&producer, &queue, "echo", json!({"text": "hi"}), None).await;
    let paused_key = QueueKeys::new(&queue).paused;
    let read_only =
        token(&json!({"tools": ["*"], "queues": [queue], "results": true, "admin": false}));

    // In the browser: every page, and no button to act.
    let b = Browser::start(&gw.base).await;
    browser_sign_in(&b, &read_only, false).await;
    assert_eq!(b.text("#rights").await, "read-only");
    b.find(&format!("tr[data-queue='{queue}']")).await;
    assert!(b.all("button[data-action]").await.is_empty());
    b.screenshot("queues-read-only").await;
    b.open(&format!("/ui/queues/{queue}/jobs/{id}")).await;
    assert_eq!(b.text("#job-state").await, "pending");
    assert!(b.all("#cancel").await.is_empty());
    b.open(&format!("/ui/queues/{queue}/jobs/no-such-job"))
        .await;
    assert_eq!(b.text("#job-state").await, "unknown");
    // Paging: 30 pending jobs, 25 a page.
    for i in 0..29 {
        enqueue(
            &producer,
            &queue,
            "echo",
            json!({ "text": i.to_string() }),
            None,
        )
        .await;
    }
    b.open(&format!("/ui/queues/{queue}/jobs?state=pending"))
        .await;
    assert_eq!(b.all("#jobs tbody tr").await.len(), 25);
    assert!(b.text("#pager").await.starts_with("1–25 of 30"));
    b.click("#next").await;
    assert_eq!(b.all("#jobs tbody tr").await.len(), 5);
    assert!(b.text("#pager").await.starts_with("26–30 of 30"));
    b.click("#prev").await;
    assert_eq!(b.all("#jobs tbody tr").await.len(), 25);
    // A queue outside the token's grant.
    b.open("/ui/queues/default/jobs").await;
    assert_eq!(
        b.find("#error")
            .await
            .attr("data-status")
            .await
            .unwrap()
            .as_deref(),
        Some("403")
    );
    b.screenshot("forbidden").await;
    // Signing out ends the session.
    b.open("/ui/workers").await;
    b.click("#logout").await;
    assert!(
        b.path().await.starts_with("/ui/login"),
        "{}",
        b.path().await
    );
    b.open("/ui/queues").await;
    assert!(b.path().await.starts_with("/ui/login"));
    b.close().await;

    // A read-only session forging an action, with its own valid CSRF token.
    let ro = sign_in(&gw, &read_only).await.expect("signed in");
    let ro_csrf = csrf_of(&page(&gw, &ro, "/ui/queues").await);
    let pause = format!("/ui/queues/{queue}/pause");
    let r = post(&gw, Some(&ro), &pause, &[("csrf", &ro_csrf)]).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("admin"));
    let cancel = format!("/ui/queues/{queue}/jobs/{id}/cancel");
    assert_eq!(
        post(&gw, Some(&ro), &cancel, &[("csrf", &ro_csrf)])
            .await
            .status(),
        403
    );

    // An admin session: without its CSRF token, or with another session's,
    // nothing happens; with it, the queue pauses.
    let admin = sign_in(&gw, &admin_token()).await.expect("signed in");
    let csrf = csrf_of(&page(&gw, &admin, "/ui/queues").await);
    assert_ne!(csrf, ro_csrf);
    for form in [vec![], vec![("csrf", "")], vec![("csrf", ro_csrf.as_str())]] {
        let r = post(&gw, Some(&admin), &pause, &form).await;
        assert_eq!(r.status(), 403, "{form:?}");
        assert!(r.text().await.unwrap().contains("CSRF"));
    }
    assert_eq!(post(&gw, Some(&admin), &cancel, &[]).await.status(), 403);
    assert!(!exists(&mut con, &paused_key).await, "nothing was paused");
    assert!(
        pending_ids(&mut con, &queue).await.contains(&id),
        "nothing was cancelled"
    );
    let r = post(&gw, Some(&admin), &pause, &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    assert!(exists(&mut con, &paused_key).await);

    // No session: pages send to the login form, actions get 401.
    let r = http().get(gw.url("/ui/workers")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/ui/login?next=/ui/workers");
    assert_eq!(
        post(&gw, None, &pause, &[("csrf", &csrf)]).await.status(),
        401
    );
    // Every console answer carries the CSP nginx sends.
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );

    // Tokens the login form refuses.
    let expired = sign(&json!({"sub": "x", "exp": now_s() - 600, "toolq": {"results": true}}));
    let r = sign_in(&gw, &expired).await.expect_err("refused");
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("token expired"));
    let blind = token(&json!({"tools": ["*"], "queues": ["*"], "results": false, "admin": true}));
    let r = sign_in(&gw, &blind).await.expect_err("refused");
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("results"));
    // A login post without the form's anchor cookie (another site's form).
    let r = post(
        &gw,
        None,
        "/ui/login",
        &[("token", &admin_token()), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(set_cookie(&r, "toolq_session").is_none());
    // An expired session cookie sends the page to the login form.
    let r = http()
        .get(gw.url("/ui/queues"))
        .header(COOKIE, format!("toolq_session={expired}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()[LOCATION]
        .to_str()
        .unwrap()
        .contains("reason=expired"));
}

#[tokio::test]
async fn without_auth_the_console_opens_at_once_and_still_checks_csrf() {
    let redis = redis();
    let url = redis.url();
    let gw = start_gateway(&url, &[], &["--no-auth"]).await;
    let queue = queue_name("open");
    let producer = Producer::connect(&url, None).unwrap();
    let mut con = raw(&url).await;
    enqueue(&producer, &queue, "echo", json!({"text": "hi"}), None).await;
    let paused_key = QueueKeys::new(&queue).paused;

    // A forged post: no session cookie, no CSRF token.
    let pause = format!("/ui/queues/{queue}/pause");
    assert_eq!(post(&gw, None, &pause, &[]).await.status(), 403);
    assert_eq!(
        post(&gw, None, &pause, &[("csrf", "0123")]).await.status(),
        403
    );
    assert!(!exists(&mut con, &paused_key).await);
    // A page of another site whose name was pointed at 127.0.0.1.
    let r = http()
        .get(gw.url("/ui/queues"))
        .header("host", "rebound.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let b = Browser::start(&gw.base).await;
    b.open("/ui/login").await;
    assert_eq!(b.path().await, "/ui/queues");
    assert_eq!(b.text("#subject").await, "anonymous");
    assert_eq!(b.text("#rights").await, "admin");
    assert!(b.all("#logout").await.is_empty());
    b.click(&format!(
        "tr[data-queue='{queue}'] button[data-action=pause]"
    ))
    .await;
    assert!(b.text("#notice").await.contains("paused"));
    assert!(exists(&mut con, &paused_key).await);
    b.close().await;
}

/// On a sharded queue a worker holds jobs in each shard's own keys: the
/// workers page counts them all as in flight, not shard 0's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_page_counts_the_jobs_held_on_every_shard() {
    let redis = redis();
    let url = redis.url();
    let gw = start_gateway(&url, &[], &["--no-auth"]).await;
    let queue = queue_name("sharded-ui");
    let producer = Producer::connect(&url, None).unwrap();
    producer.set_shards(&queue, 4).await.unwrap();
    let _worker = spawn_worker_process(&url, &queue, 8, &[]);
    let mut held = Vec::new();
    for _ in 0..4 {
        let s = producer
            .enqueue_batch(
                &queue,
                &[Job::new("sleep", json!({"ms": 30000}))],
                &BatchOptions::default(),
            )
            .await
            .unwrap();
        held.push((s.ids[0].clone(), s.shards[0]));
    }
    let mut shards: Vec<u32> = held.iter().map(|(_, k)| *k).collect();
    shards.sort_unstable();
    assert_eq!(shards, [0, 1, 2, 3], "a job on each shard");
    eventually(Duration::from_secs(30), "the four jobs run", || {
        let (producer, queue, held) = (&producer, &queue, &held);
        async move {
            for (id, _) in held {
                let view = producer.job(queue, id).await.unwrap();
                if view.state != JobState::Running {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let page = http()
        .get(gw.url("/ui/workers"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"data-field="in-flight">4<"#),
        "4 jobs in flight over 4 shards:\n{page}"
    );
}
