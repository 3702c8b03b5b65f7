//! Who is looking at the console. A browser cannot put a bearer token on a
//! link, so the login form takes the token once and keeps it in a cookie
//! (HttpOnly: no script reads it; SameSite=Strict: no other site's page
//! sends it; Secure behind a TLS proxy; expiring with the token). Every
//! request checks it again with the gateway's verifier, so the token's
//! `exp` ends the session and nothing is stored server-side: any gateway
//! replica serves any request. With `--no-auth` the session is anonymous
//! and may do everything, but still has a cookie, for its CSRF token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{COOKIE, HOST, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::page::PageError;
use super::{csrf, Console};
use crate::gateway::auth::{Principal, TokenError};
use crate::gateway::{Auth, Grant};

/// The session cookie: the token (or, with `--no-auth`, a random nonce).
pub const SESSION_COOKIE: &str = "toolq_session";
/// Where the console's cookies are sent: nowhere else on the gateway.
const COOKIE_PATH: &str = "/ui";

/// A checked session, left in the request for the pages and actions.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// The token every form of this session carries.
    pub csrf: String,
    /// Running with `--no-auth`: no login, no logout.
    pub open: bool,
}

impl Session {
    pub fn may_act(&self) -> bool {
        self.principal.grant.admin
    }

    pub fn may_see(&self, queue: &str) -> bool {
        self.principal.grant.may_use_queue(queue)
    }

    /// A 403 unless the token's `queues` allow `queue`.
    pub fn check_queue(&self, queue: &str) -> Result<(), PageError> {
        if self.may_see(queue) {
            Ok(())
        } else {
            Err(PageError::forbidden(format!(
                "this token's grant does not include queue {queue:?}"
            )))
        }
    }
}

/// Authenticates every console page and action: a missing, expired or bad
/// token sends a page load to the login form (an action gets a 401 page);
/// a token without `results` gets a 403 page.
pub async fn require(
    State(console): State<Arc<Console>>,
    mut request: Request,
    next: Next,
) -> Response {
    let secure = behind_tls(request.headers());
    let cookie = cookie(request.headers(), SESSION_COOKIE);
    match console.auth.as_ref() {
        Auth::Open => {
            if !loopback_host(request.headers()) {
                return PageError::forbidden(
                    "without authentication the console answers only to a loopback host name (localhost, 127.0.0.1, [::1])",
                )
                .into_response();
            }
            let (nonce, fresh) = match cookie.filter(|c| is_nonce(c)) {
                Some(n) => (n, false),
                None => (new_nonce(), true),
            };
            request.extensions_mut().insert(Session {
                principal: Principal {
                    subject: "anonymous".into(),
                    grant: Grant::everything(),
                },
                csrf: csrf::token_for(&nonce),
                open: true,
            });
            let mut response = next.run(request).await;
            if fresh {
                set_cookie(&mut response, SESSION_COOKIE, &nonce, None, secure);
            }
            response
        }
        Auth::Jwt(verifier) => {
            let checked = match &cookie {
                None => Err(TokenError::Missing),
                Some(token) => verifier.verify_until(token),
            };
            let principal = match checked {
                Ok((principal, _)) => principal,
                Err(e) => return to_login(&request, cookie.is_some(), &e, secure),
            };
            if !principal.grant.results {
                return PageError::forbidden(
                    "this token may not use the console: its grant needs \"results\": true",
                )
                .into_response();
            }
            let token = cookie.unwrap_or_default();
            request.extensions_mut().insert(Session {
                principal,
                csrf: csrf::token_for(&token),
                open: false,
            });
            next.run(request).await
        }
    }
}

/// No valid session: a page load goes to the login form (and comes back
/// after it), anything else gets a 401 page. A stale cookie is dropped.
fn to_login(request: &Request, had_cookie: bool, error: &TokenError, secure: bool) -> Response {
    let mut response = if request.method() == Method::GET || request.method() == Method::HEAD {
        let reason = match error {
            TokenError::Missing => "",
            TokenError::Expired => "&reason=expired",
            _ => "&reason=invalid",
        };
        // Nested at /ui, the router sees paths without the prefix.
        let back = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let next = url_encode(&format!("/ui{back}"));
        Redirect::to(&format!("/ui/login?next={next}{reason}")).into_response()
    } else {
        PageError::unauthorized(format!("no valid session ({error}): log in again")).into_response()
    };
    if had_cookie {
        clear_cookie(&mut response, SESSION_COOKIE, secure);
    }
    response
}

/// The value of cookie `name`, if the request has it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// Behind the TLS proxy (`X-Forwarded-Proto: https`, which ops/nginx sets
/// and a client cannot override there): cookies get `Secure`.
pub fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The request names a loopback host. Without authentication this is what
/// stops DNS rebinding: a page of another site whose name was pointed at
/// 127.0.0.1 would otherwise be same-origin with the console, and could
/// read a CSRF token and post with it.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    // Without the port: `[::1]:8080`, `localhost:8080`, `127.0.0.1`.
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Adds `Set-Cookie` for a console cookie; `max_age_s` None: until the
/// browser closes.
pub fn set_cookie(
    response: &mut Response,
    name: &str,
    value: &str,
    max_age_s: Option<u64>,
    secure: bool,
) {
    let mut text = format!("{name}={value}; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age_s {
        text.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        text.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&text) {
        response.headers_mut().append(SET_COOKIE, v);
    }
}

pub fn clear_cookie(response: &mut Response, name: &str, secure: bool) {
    set_cookie(response, name, "", Some(0), secure);
}

/// 128 random bits in hex: an anonymous session or a login form's anchor.
pub fn new_nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn is_nonce(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; toolq_session=abc.def"),
        );
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc.def"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "toolq"), None);
    }

    #[test]
    fn cookies_are_strict_http_only_and_secure_behind_tls() {
        let mut r = Response::new(axum::body::Body::empty());
        set_cookie(&mut r, "c", "v", Some(60), true);
        clear_cookie(&mut r, "d", false);
        let set: Vec<_> = r.headers().get_all(SET_COOKIE).iter().collect();
        assert_eq!(
            set[0],
            "c=v; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
        assert_eq!(set[1], "d=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    }

    #[test]
    fn only_loopback_names_are_loopback() {
        let with = |host: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(HOST, HeaderValue::from_static(host));
            loopback_host(&h)
        };
        for ok in [
            "localhost:8080",
            "127.0.0.1:9",
            "127.1.2.3",
            "[::1]:8080",
            "LOCALHOST",
        ] {
            assert!(with(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1",
            "[::2]:1",
            "",
        ] {
            assert!(!with(bad), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn nonces_are_random_hex() {
        let (a, b) = (new_nonce(), new_nonce());
        assert!(is_nonce(&a) && is_nonce(&b) && a != b);
        assert!(!is_nonce("not-a-nonce"));
    }

    #[test]
    fn url_encoding_keeps_paths_readable() {
        assert_eq!(
            url_encode("/ui/queues/a b/jobs?state=dead"),
            "/ui/queues/a%20b/jobs%3Fstate%3Ddead"
        );
    }
}
