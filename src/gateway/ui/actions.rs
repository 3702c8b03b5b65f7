//! The console's actions: pause and resume a queue, cancel a job, retry or
//! purge dead jobs. Each is a POST whose form carries the CSRF token and
//! needs an admin session ([`Act`]); each answers with a redirect to the
//! page it came from, with a notice of what it did (post/redirect/get, so a
//! reload does not act twice).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Redirect;
use serde::Deserialize;

use super::csrf::{Act, CsrfForm};
use super::page::PageError;
use super::session::{url_encode, Session};
use super::Console;
use crate::producer::CancelOutcome;

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Plain {
    #[serde(default)]
    csrf: String,
}

#[derive(Debug, Deserialize)]
pub struct RetryForm {
    #[serde(default)]
    csrf: String,
    /// One dead job; absent: all of them (with `all`).
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    all: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PurgeForm {
    #[serde(default)]
    csrf: String,
    /// The confirmation box: must be ticked.
    #[serde(default)]
    confirm: Option<String>,
    /// Only jobs dead for longer than this many seconds; empty: all.
    #[serde(default)]
    older_than_s: Option<String>,
}

macro_rules! csrf_form {
    ($($t:ty),*) => {$(
        impl CsrfForm for $t {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    )*};
}
csrf_form!(Plain, RetryForm, PurgeForm);

/// What an action did, shown on the page it returns to. Only these codes
/// (and a count) travel in the URL, never text, so a link cannot make the
/// console say something else.
#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    pub notice: Option<String>,
    /// Text, read as a number: a bad one shows no count rather than an
    /// error page.
    #[serde(default)]
    pub n: Option<String>,
}

pub struct Notice {
    pub text: String,
    /// Shown as a problem rather than a success.
    pub bad: bool,
}

impl NoticeQuery {
    pub fn notice(&self) -> Option<Notice> {
        let n: u64 = self.n.as_deref().and_then(|n| n.parse().ok()).unwrap_or(0);
        let (text, bad) = match self.notice.as_deref()? {
            "paused" => (
                "Queue paused: workers take no new job from it; running jobs finish.".to_owned(),
                false,
            ),
            "resumed" => ("Queue resumed.".to_owned(), false),
            "cancelled" => ("Job cancelled: it will not run.".to_owned(), false),
            "cancel-requested" => (
                "Cancel requested: the worker stops the running job.".to_owned(),
                false,
            ),
            "cancel-finished" => (
                "Nothing to cancel: the job had already finished.".to_owned(),
                true,
            ),
            "cancel-unknown" => ("Nothing to cancel: no such job.".to_owned(), true),
            "retried" => (format!("{n} dead job(s) put back on pending."), false),
            "not-retried" => ("No dead job with that id.".to_owned(), true),
            "purged" => (format!("{n} dead job(s) purged."), false),
            _ => return None,
        };
        Some(Notice { text, bad })
    }
}

/// A queue name from the path, as the REST API accepts it, that the
/// session may see.
fn queue_of(session: &Session, queue: String) -> Result<String, PageError> {
    let queue = crate::gateway::routes::queue_of(Some(queue))
        .map_err(|e| PageError::bad_request(e.to_string()))?;
    session.check_queue(&queue)?;
    Ok(queue)
}

pub fn queue_path(queue: &str) -> String {
    format!("/ui/queues/{}", url_encode(queue).replace('/', "%2F"))
}

fn done(to: String, notice: &str, n: Option<u64>) -> Redirect {
    let sep = if to.contains('?') { '&' } else { '?' };
    let count = n.map(|n| format!("&n={n}")).unwrap_or_default();
    Redirect::to(&format!("{to}{sep}notice={notice}{count}"))
}

/// `POST /ui/queues/{queue}/pause`
pub async fn pause(
    State(console): State<Arc<Console>>,
    Path(queue): Path<String>,
    Act(session, _): Act<Plain>,
) -> Result<Redirect, PageError> {
    let queue = queue_of(&session, queue)?;
    console.producer.pause(&queue).await?;
    tracing::info!(%queue, subject = %session.principal.subject, "console: queue paused");
    Ok(done("/ui/queues".into(), "paused", None))
}

/// `POST /ui/queues/{queue}/resume`
pub async fn resume(
    State(console): State<Arc<Console>>,
    Path(queue): Path<String>,
    Act(session, _): Act<Plain>,
) -> Result<Redirect, PageError> {
    let queue = queue_of(&session, queue)?;
    console.producer.resume(&queue).await?;
    tracing::info!(%queue, subject = %session.principal.subject, "console: queue resumed");
    Ok(done("/ui/queues".into(), "resumed", None))
}

/// `POST /ui/queues/{queue}/jobs/{id}/cancel`
pub async fn cancel(
    State(console): State<Arc<Console>>,
    Path((queue, id)): Path<(String, String)>,
    Act(session, _): Act<Plain>,
) -> Result<Redirect, PageError> {
    let queue = queue_of(&session, queue)?;
    let outcome = console.producer.cancel(&queue, &id).await?;
    tracing::info!(%queue, job_id = %id, ?outcome, subject = %session.principal.subject, "console: cancel");
    let notice = match outcome {
        CancelOutcome::Removed(_) => "cancelled",
        CancelOutcome::Requested => "cancel-requested",
        CancelOutcome::Finished(_) => "cancel-finished",
        CancelOutcome::Unknown => "cancel-unknown",
    };
    let page = format!(
        "{}/jobs/{}",
        queue_path(&queue),
        url_encode(&id).replace('/', "%2F")
    );
    Ok(done(page, notice, None))
}

/// `POST /ui/queues/{queue}/dead/retry`: one dead job (`id`) or all.
pub async fn retry(
    State(console): State<Arc<Console>>,
    Path(queue): Path<String>,
    Act(session, form): Act<RetryForm>,
) -> Result<Redirect, PageError> {
    let queue = queue_of(&session, queue)?;
    let back = format!("{}/jobs?state=dead", queue_path(&queue));
    let p = &console.producer;
    let redirect = match (form.id.filter(|i| !i.is_empty()), form.all.is_some()) {
        (Some(id), _) => {
            if p.dead_retry(&queue, &id, console.unique_ttl).await? {
                done(back, "retried", Some(1))
            } else {
                done(back, "not-retried", None)
            }
        }
        (None, true) => {
            let r = p.dead_retry_all(&queue, console.unique_ttl).await?;
            done(back, "retried", Some(r.retried))
        }
        (None, false) => {
            return Err(PageError::bad_request(
                "say which dead job to retry, or all",
            ))
        }
    };
    tracing::info!(%queue, subject = %session.principal.subject, "console: dead jobs retried");
    Ok(redirect)
}

/// `POST /ui/queues/{queue}/dead/purge`: all dead jobs, or those older
/// than `older_than_s`, once the confirmation box is ticked.
pub async fn purge(
    State(console): State<Arc<Console>>,
    Path(queue): Path<String>,
    Act(session, form): Act<PurgeForm>,
) -> Result<Redirect, PageError> {
    let queue = queue_of(&session, queue)?;
    if form.confirm.as_deref() != Some("yes") {
        return Err(PageError::bad_request(
            "purging deletes dead jobs for good: tick the confirmation box",
        ));
    }
    let older_than = match form.older_than_s.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(Duration::from_secs(s.parse().map_err(|_| {
            PageError::bad_request(format!("older_than_s {s:?} is not a number of seconds"))
        })?)),
    };
    let n = console.producer.dead_purge(&queue, older_than).await?;
    tracing::info!(%queue, purged = n, subject = %session.principal.subject, "console: dead jobs purged");
    Ok(done(
        format!("{}/jobs?state=dead", queue_path(&queue)),
        "purged",
        Some(n),
    ))
}
