//! CSRF protection. Every form carries a token derived from the session's
//! secret (the JWT in its HttpOnly cookie, or an anonymous session's
//! nonce), and every POST is refused unless it sends the right one: another
//! site can make a browser post a form, but cannot read the page that holds
//! the token. Derived, not stored, so every gateway replica checks it the
//! same way. SameSite=Strict cookies are the second line.

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::page::PageError;
use super::session::Session;

/// The CSRF token of a session whose secret is `secret`.
pub fn token_for(secret: &str) -> String {
    let hash = Sha256::new()
        .chain_update(b"toolq console csrf\n")
        .chain_update(secret.as_bytes())
        .finalize();
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Equal, in time independent of where they differ.
pub fn matches(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A form that carries the CSRF token in its `csrf` field.
pub trait CsrfForm {
    fn csrf(&self) -> &str;
}

/// The extractor of every action: the session, and the form once its CSRF
/// token is checked (403 otherwise) and the session may act (`admin`, 403
/// otherwise).
pub struct Act<T>(pub Session, pub T);

impl<S, T> FromRequest<S> for Act<T>
where
    S: Send + Sync,
    T: DeserializeOwned + CsrfForm + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let session = request
            .extensions()
            .get::<Session>()
            .cloned()
            .ok_or_else(|| PageError::unauthorized("no session").into_response())?;
        let Form(form) = Form::<T>::from_request(request, state)
            .await
            .map_err(|e| PageError::bad_request(e.body_text()).into_response())?;
        if !matches(&session.csrf, form.csrf()) {
            return Err(PageError::csrf().into_response());
        }
        if !session.may_act() {
            return Err(PageError::forbidden(
                "this token may look but not act: actions need \"admin\": true in its grant",
            )
            .into_response());
        }
        Ok(Act(session, form))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_the_secret_and_compare_exactly() {
        let a = token_for("secret-a");
        assert_eq!(a.len(), 32);
        assert_eq!(a, token_for("secret-a"));
        assert_ne!(a, token_for("secret-b"));
        assert!(matches(&a, &a.clone()));
        assert!(!matches(&a, ""));
        assert!(!matches(&a, &token_for("secret-b")));
    }
}
