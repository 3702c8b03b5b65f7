//! A `tools/call` whose progress notifications reach the job: rmcp gives
//! every request a progress token, so the call is sent by hand to learn it,
//! and the notifications carrying it are reported to the job's context
//! while the answer is awaited.
//!
//! rmcp handles each notification in a task of its own, so they may arrive
//! out of order: one that goes backwards (MCP says progress only grows) is
//! dropped. A call whose progress stopped short of its total waits up to
//! 100 ms after the answer for notifications still on their way; one later
//! than that is lost, which costs little: the answer ends the call.

use std::time::Duration;

use futures::StreamExt;
use rmcp::handler::client::progress::ProgressDispatcher;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientRequest, ProgressNotificationParam, RequestId, ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RoleClient, ServiceError};

use crate::tools::JobContext;

/// How long a call whose progress stopped short of its total waits, after
/// the answer, for notifications still on their way.
const FINAL_NOTES_WAIT: Duration = Duration::from_millis(100);

/// Sends `params` as a `tools/call` and awaits the answer, reporting the
/// server's progress to `cx`. Dropped before the answer (the job's timeout,
/// a stop), it tells the server the call is cancelled, as rmcp's own
/// `call_tool` does.
pub async fn call(
    peer: &Peer<RoleClient>,
    dispatcher: &ProgressDispatcher,
    params: CallToolRequestParams,
    cx: JobContext<'_>,
) -> Result<CallToolResult, ServiceError> {
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = peer
        .send_request_with_option(request, PeerRequestOptions::no_options())
        .await?;
    let mut notes = dispatcher.subscribe(handle.progress_token.clone()).await;
    let mut abandon = Abandon {
        peer,
        id: Some(handle.id.clone()),
    };
    let answer = handle.await_response();
    tokio::pin!(answer);
    let mut last = Reported::default();
    let answer = loop {
        tokio::select! {
            // Notifications first: the server sent them before its answer,
            // and one already here when the answer lands is not lost.
            biased;
            Some(note) = notes.next() => last.report(&note, cx),
            answer = &mut answer => break answer,
        }
    };
    // rmcp hands each notification to a task of its own, so the last ones
    // may still be on their way when the answer is here: a call that
    // reported progress short of its total waits a moment for them.
    let grace = tokio::time::sleep(FINAL_NOTES_WAIT);
    tokio::pin!(grace);
    while last.seen && last.fraction < 1.0 {
        tokio::select! {
            biased;
            Some(note) = notes.next() => last.report(&note, cx),
            _ = &mut grace => break,
        }
    }
    abandon.id = None;
    match answer? {
        ServerResult::CallToolResult(result) => Ok(result),
        _ => Err(ServiceError::UnexpectedResponse),
    }
}

/// The latest progress reported, to drop notifications that go backwards
/// and to keep the fraction when a note has no total.
#[derive(Default)]
struct Reported {
    progress: f64,
    fraction: f64,
    /// Whether any notification came.
    seen: bool,
}

impl Reported {
    fn report(&mut self, note: &ProgressNotificationParam, cx: JobContext<'_>) {
        if note.progress < self.progress {
            return;
        }
        self.progress = note.progress;
        self.seen = true;
        if let Some(total) = note.total.filter(|t| *t > 0.0) {
            self.fraction = note.progress / total;
        }
        let message = match (&note.message, note.total) {
            (Some(m), _) => m.clone(),
            (None, Some(total)) => format!("{} of {total}", note.progress),
            (None, None) => note.progress.to_string(),
        };
        cx.progress(self.fraction, &message);
    }
}

/// Sends `notifications/cancelled` for a request dropped before its answer.
struct Abandon<'a> {
    peer: &'a Peer<RoleClient>,
    id: Option<RequestId>,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let peer = self.peer.clone();
        let param = CancelledNotificationParam::new(
            Some(id),
            Some("request abandoned by the caller".to_owned()),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = peer.notify_cancelled(param).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rmcp::model::{NumberOrString, ProgressToken};

    use super::*;
    use crate::tools::ProgressSink;

    #[derive(Default)]
    struct Keep(Mutex<Vec<(f64, String)>>);

    impl ProgressSink for Keep {
        fn report(&self, fraction: f64, message: &str) {
            self.0.lock().unwrap().push((fraction, message.to_owned()));
        }
    }

    fn note(progress: f64, total: Option<f64>, message: Option<&str>) -> ProgressNotificationParam {
        let mut n =
            ProgressNotificationParam::new(ProgressToken(NumberOrString::Number(1)), progress);
        n.total = total;
        n.message = message.map(str::to_owned);
        n
    }

    #[test]
    fn notes_map_to_fractions_and_never_go_back() {
        let keep = Keep::default();
        let cx = JobContext::new("j", 0, "q").with_sink(&keep);
        let mut last = Reported::default();
        last.report(&note(1.0, Some(4.0), Some("one")), cx);
        last.report(&note(3.0, Some(4.0), None), cx);
        last.report(&note(2.0, Some(4.0), Some("late")), cx);
        last.report(&note(5.0, None, None), cx);
        let got = keep.0.into_inner().unwrap();
        assert_eq!(
            got,
            [
                (0.25, "one".to_owned()),
                (0.75, "3 of 4".to_owned()),
                (0.75, "5".to_owned()),
            ]
        );
    }
}
