//! What every console answer shares: the layout's data, rendering, error
//! pages, the stylesheet, and the security headers (the same CSP that
//! ops/nginx sends, so the console keeps to it even without the proxy).

use askama::Template;
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::session::Session;
use crate::producer::ProducerError;

/// No inline script or style, nothing from another origin, never framed.
pub const CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const STYLESHEET: &str = include_str!("static/console.css");

/// The layout's data: the navigation and who is signed in.
pub struct Layout {
    /// Which navigation entry is current (`queues`, `workers`, or none).
    pub active: &'static str,
    /// The token's `sub`; `None` on pages shown without a session.
    pub subject: Option<String>,
    pub admin: bool,
    pub csrf: String,
    /// `--no-auth`: no logout button.
    pub open: bool,
}

impl Layout {
    pub fn new(session: &Session, active: &'static str) -> Self {
        Layout {
            active,
            subject: Some(session.principal.subject.clone()),
            admin: session.may_act(),
            csrf: session.csrf.clone(),
            open: session.open,
        }
    }

    /// For pages shown without a session (login, errors).
    pub fn bare() -> Self {
        Layout {
            active: "",
            subject: None,
            admin: false,
            csrf: String::new(),
            open: false,
        }
    }
}

/// Renders a page; a template that fails to render is a 500 page.
pub fn render(template: &impl Template) -> Result<Html<String>, PageError> {
    template
        .render()
        .map(Html)
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string()))
}

/// A page that says what went wrong, with its status.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        PageError {
            status,
            title,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Not allowed", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Not signed in", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", message)
    }

    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "the form's CSRF token is missing or wrong: reload the page and try again",
        )
    }
}

impl From<ProducerError> for PageError {
    fn from(e: ProducerError) -> Self {
        match e {
            ProducerError::Queue(q) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Redis unavailable",
                q.to_string(),
            ),
            ProducerError::Refused(m) => Self::new(StatusCode::CONFLICT, "Refused", m),
            other => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                other.to_string(),
            ),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            layout: Layout::bare(),
            status: self.status.as_u16(),
            title: self.title,
            message: &self.message,
        };
        let body = page
            .render()
            .unwrap_or_else(|_| format!("{}: {}", self.title, self.message));
        (self.status, Html(body)).into_response()
    }
}

/// Any path under `/ui` that is not a page.
pub async fn not_found() -> PageError {
    PageError::not_found("no such page in the console")
}

pub async fn stylesheet() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Security headers on every console answer; pages are never cached (they
/// show live state, and a shared cache must not keep them).
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let mut put = |name: HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    put(HeaderName::from_static("content-security-policy"), CSP);
    put(HeaderName::from_static("x-content-type-options"), "nosniff");
    put(HeaderName::from_static("x-frame-options"), "DENY");
    put(HeaderName::from_static("referrer-policy"), "no-referrer");
    put(CACHE_CONTROL, "no-store");
    response
}

#[cfg(test)]
mod tests {
    /// The CSP forbids inline script and style: no template may have any.
    #[test]
    fn templates_have_no_inline_script_or_style() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/gateway/ui/templates");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap().to_lowercase();
            for banned in [
                "<script",
                "<style",
                "style=",
                " on",
                "javascript:",
                "http://",
                "https://",
            ] {
                let found = match banned {
                    // Event handler attributes: ` onclick=` and the like.
                    " on" => text.match_indices(" on").any(|(i, _)| {
                        let rest = &text[i + 3..];
                        let name: String =
                            rest.chars().take_while(char::is_ascii_alphabetic).collect();
                        !name.is_empty() && rest[name.len()..].starts_with('=')
                    }),
                    b => text.contains(b),
                };
                assert!(!found, "{} contains {banned:?}", path.display());
            }
            seen += 1;
        }
        assert!(seen >= 5, "templates found: {seen}");
    }
}
