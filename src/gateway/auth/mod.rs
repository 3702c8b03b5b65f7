//! Authentication and authorisation of gateway requests: bearer JWTs
//! (`verifier`) carrying the `toolq` claim (`grant`). A middleware checks
//! the token once and leaves the [`Principal`] in the request, where the
//! routes (and the MCP endpoint) read it.

mod grant;
mod verifier;

pub use grant::{glob_match, Grant};
pub use verifier::{KeyError, Principal, TokenError, Verifier};

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::ApiError;

/// How requests are authenticated.
pub enum Auth {
    Jwt(Verifier),
    /// `--no-auth` on a loopback address: every request may do everything.
    Open,
}

/// Checks the bearer token; 401 without a valid one.
pub async fn authenticate(
    State(auth): State<Arc<Auth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match auth.as_ref() {
        Auth::Open => Principal {
            subject: "anonymous".into(),
            grant: Grant::everything(),
        },
        Auth::Jwt(verifier) => {
            let token = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim);
            let checked = match token {
                None | Some("") => Err(TokenError::Missing),
                Some(t) => verifier.verify(t),
            };
            match checked {
                Ok(p) => p,
                Err(e) => return ApiError::Unauthorized(e.to_string()).into_response(),
            }
        }
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}
