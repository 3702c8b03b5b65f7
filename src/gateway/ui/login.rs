//! Signing in with a token and out again. The login form is protected
//! against CSRF too (a site must not sign a browser in with its own token):
//! it carries a token derived from a nonce in a short-lived cookie.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::page::{render, Layout, PageError};
use super::session::{self, Session, SESSION_COOKIE};
use super::{csrf, Console};
use crate::gateway::Auth;

/// The login form's anchor cookie.
const LOGIN_COOKIE: &str = "toolq_login";
/// How long a login form stays usable.
const LOGIN_FORM_S: u64 = 3600;
/// Where to go after signing in, unless the form says otherwise.
const HOME: &str = "/ui/queues";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    csrf: String,
    next: String,
    notice: Option<&'static str>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `GET /ui/login`: the form (with `--no-auth`, straight to the console).
pub async fn form(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Result<Response, PageError> {
    if matches!(console.auth.as_ref(), Auth::Open) {
        return Ok(Redirect::to(HOME).into_response());
    }
    let nonce = session::cookie(&headers, LOGIN_COOKIE)
        .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(session::new_nonce);
    let notice = match q.reason.as_deref() {
        Some("expired") => Some("Your session ended: the token expired. Sign in with a fresh one."),
        Some("invalid") => Some("Your session's token is no longer accepted. Sign in again."),
        Some("signed-out") => Some("Signed out."),
        _ => None,
    };
    let page = LoginPage {
        layout: Layout::bare(),
        csrf: csrf::token_for(&nonce),
        next: safe_next(q.next.as_deref()).to_owned(),
        notice,
        error: None,
    };
    let mut response = render(&page)?.into_response();
    let secure = session::behind_tls(&headers);
    session::set_cookie(
        &mut response,
        LOGIN_COOKIE,
        &nonce,
        Some(LOGIN_FORM_S),
        secure,
    );
    Ok(response)
}

/// `POST /ui/login`: checks the token with the gateway's verifier and
/// starts a session that ends when the token does.
pub async fn submit(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, PageError> {
    let Auth::Jwt(verifier) = console.auth.as_ref() else {
        return Ok(Redirect::to(HOME).into_response());
    };
    let nonce = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if nonce.is_empty() || !csrf::matches(&csrf::token_for(&nonce), &f.csrf) {
        return Err(PageError::csrf());
    }
    let next = safe_next(f.next.as_deref());
    let again = |status: StatusCode, error: String| -> Result<Response, PageError> {
        let page = LoginPage {
            layout: Layout::bare(),
            csrf: f.csrf.clone(),
            next: next.to_owned(),
            notice: None,
            error: Some(error),
        };
        Ok((status, render(&page)?).into_response())
    };
    let token = f.token.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token)
        .trim();
    if token.is_empty() {
        return again(StatusCode::UNAUTHORIZED, "Paste a token.".into());
    }
    // A JWT is base64url parts and dots; anything else cannot be one, and
    // must not reach a cookie header.
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return again(StatusCode::UNAUTHORIZED, "That is not a JWT.".into());
    }
    let (principal, exp) = match verifier.verify_until(token) {
        Ok(checked) => checked,
        Err(e) => return again(StatusCode::UNAUTHORIZED, format!("Token refused: {e}.")),
    };
    if !principal.grant.results {
        return again(
            StatusCode::FORBIDDEN,
            "This token may not use the console: its grant needs \"results\": true (and \"admin\": true to act).".into(),
        );
    }
    let now_s = crate::job::now_ms() / 1000;
    let secure = session::behind_tls(&headers);
    let mut response = Redirect::to(next).into_response();
    session::set_cookie(
        &mut response,
        SESSION_COOKIE,
        token,
        Some(exp.saturating_sub(now_s).max(1)),
        secure,
    );
    session::clear_cookie(&mut response, LOGIN_COOKIE, secure);
    tracing::info!(subject = %principal.subject, admin = principal.grant.admin, "console: signed in");
    Ok(response)
}

/// `POST /ui/logout`: drops the session cookie.
pub async fn logout(
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Result<Response, PageError> {
    if !csrf::matches(&session.csrf, &f.csrf) {
        return Err(PageError::csrf());
    }
    if session.open {
        return Ok(Redirect::to(HOME).into_response());
    }
    let mut response = Redirect::to("/ui/login?reason=signed-out").into_response();
    session::clear_cookie(&mut response, SESSION_COOKIE, session::behind_tls(&headers));
    Ok(response)
}

/// Where a login may send the browser: only a console page of this origin.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.starts_with("/ui/login")
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => HOME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_only_returns_to_console_pages() {
        assert_eq!(safe_next(Some("/ui/workers")), "/ui/workers");
        assert_eq!(
            safe_next(Some("/ui/queues/a/jobs?state=dead")),
            "/ui/queues/a/jobs?state=dead"
        );
        for bad in [
            "https://evil.example/ui/",
            "//evil",
            "/ui//evil",
            "/ui/\\x",
            "/ui/a b",
            "/ui/login",
        ] {
            assert_eq!(safe_next(Some(bad)), HOME, "{bad}");
        }
        assert_eq!(safe_next(None), HOME);
    }
}
