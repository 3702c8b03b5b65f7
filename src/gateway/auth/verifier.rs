//! Checks bearer tokens: signature, `exp`/`nbf` with a small leeway, and
//! `aud`/`iss` when configured. Keys are read once at start-up, so a bad key
//! file stops the gateway before it takes a request, not at the first call.

use std::collections::HashSet;
use std::path::Path;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::Grant;
use crate::config::ServeConfig;

/// The asymmetric algorithms a public key may verify. HS* is never accepted
/// with a public key: that is the classic key-confusion attack.
const PUBLIC_KEY_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("serve.{key}: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("serve.{key}: {path} holds no usable key: {message}")]
    Unusable {
        key: &'static str,
        path: String,
        message: String,
    },
    #[error("serve: set one of jwt_secret_file, jwt_public_key_file or jwks_file (or run with --no-auth on a loopback address)")]
    NoKey,
    #[error("serve: set only one of jwt_secret_file, jwt_public_key_file and jwks_file")]
    TwoKeys,
}

/// Why a token was refused; the message goes back to the client, so it names
/// the problem without echoing the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("missing bearer token (Authorization: Bearer <jwt>)")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    #[error("token has the wrong audience")]
    Audience,
    #[error("token has the wrong issuer")]
    Issuer,
    #[error("token signature or algorithm is not accepted")]
    Signature,
    #[error("malformed token, or an algorithm that is not accepted")]
    Malformed,
}

enum Keys {
    Secret(DecodingKey),
    Public(DecodingKey),
    Set(JwkSet),
}

pub struct Verifier {
    keys: Keys,
    audience: Option<String>,
    issuer: Option<String>,
    leeway_s: u64,
}

/// The claims the gateway reads; everything else is ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    toolq: Option<Grant>,
    /// Required by the validation; read back for the console's session.
    #[serde(default)]
    exp: u64,
}

/// A checked token: who it is (for per-token rate limits) and its rights.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `sub`, or a digest of the token when it has none.
    pub subject: String,
    pub grant: Grant,
}

impl Verifier {
    pub fn from_config(serve: &ServeConfig) -> Result<Self, KeyError> {
        let given = [
            serve.jwt_secret_file.is_some(),
            serve.jwt_public_key_file.is_some(),
            serve.jwks_file.is_some(),
        ];
        let keys = match given.iter().filter(|g| **g).count() {
            0 => return Err(KeyError::NoKey),
            1 => {
                if let Some(path) = &serve.jwt_secret_file {
                    Keys::Secret(secret_key(path)?)
                } else if let Some(path) = &serve.jwt_public_key_file {
                    Keys::Public(public_key(path)?)
                } else if let Some(path) = &serve.jwks_file {
                    Keys::Set(key_set(path)?)
                } else {
                    return Err(KeyError::NoKey);
                }
            }
            _ => return Err(KeyError::TwoKeys),
        };
        Ok(Verifier {
            keys,
            audience: serve.audience.clone(),
            issuer: serve.issuer.clone(),
            leeway_s: serve.jwt_leeway_s,
        })
    }

    /// Checks `token` and returns who it is and what it may do.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        self.verify_until(token).map(|(principal, _)| principal)
    }

    /// [`Verifier::verify`], and until when the token is valid (its `exp`,
    /// unix seconds): the console's session cookie lasts no longer.
    pub fn verify_until(&self, token: &str) -> Result<(Principal, u64), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let (key, algorithms): (DecodingKey, Vec<Algorithm>) = match &self.keys {
            Keys::Secret(k) => (k.clone(), vec![Algorithm::HS256]),
            Keys::Public(k) => (k.clone(), PUBLIC_KEY_ALGORITHMS.to_vec()),
            Keys::Set(set) => {
                let jwk = match &header.kid {
                    Some(kid) => set.find(kid),
                    None if set.keys.len() == 1 => set.keys.first(),
                    None => None,
                }
                .ok_or(TokenError::Signature)?;
                let key = DecodingKey::from_jwk(jwk).map_err(|_| TokenError::Signature)?;
                (key, PUBLIC_KEY_ALGORITHMS.to_vec())
            }
        };
        if !algorithms.contains(&header.alg) {
            return Err(TokenError::Signature);
        }
        // One algorithm: the token's, once it is known to be acceptable (the
        // crate also refuses one whose family does not match the key's).
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_s;
        validation.validate_nbf = true;
        validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => TokenError::Expired,
                K::ImmatureSignature => TokenError::NotYetValid,
                K::InvalidAudience => TokenError::Audience,
                K::InvalidIssuer => TokenError::Issuer,
                K::MissingRequiredClaim(c) if c == "aud" => TokenError::Audience,
                K::MissingRequiredClaim(c) if c == "iss" => TokenError::Issuer,
                K::InvalidSignature | K::InvalidAlgorithm | K::MissingAlgorithm => {
                    TokenError::Signature
                }
                _ => TokenError::Malformed,
            }
        })?;
        let subject = match data.claims.sub {
            Some(sub) => sub,
            None => digest(token),
        };
        let principal = Principal {
            subject,
            grant: data.claims.toolq.unwrap_or_default(),
        };
        Ok((principal, data.claims.exp))
    }
}

fn digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(token.as_bytes());
    hash.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        key,
        path: path.display().to_string(),
        source,
    })
}

fn unusable(key: &'static str, path: &Path, message: impl ToString) -> KeyError {
    KeyError::Unusable {
        key,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn secret_key(path: &Path) -> Result<DecodingKey, KeyError> {
    const KEY: &str = "jwt_secret_file";
    let bytes = read(KEY, path)?;
    // Secrets mounted from files usually end in a newline nobody meant.
    let secret = bytes.trim_ascii_end();
    if secret.len() < 32 {
        return Err(unusable(
            KEY,
            path,
            "an HS256 secret must be at least 32 bytes",
        ));
    }
    Ok(DecodingKey::from_secret(secret))
}

fn public_key(path: &Path) -> Result<DecodingKey, KeyError> {
    const KEY: &str = "jwt_public_key_file";
    let pem = read(KEY, path)?;
    DecodingKey::from_rsa_pem(&pem)
        .or_else(|_| DecodingKey::from_ed_pem(&pem))
        .or_else(|_| DecodingKey::from_ec_pem(&pem))
        .map_err(|_| unusable(KEY, path, "not an RSA, Ed25519 or EC public key in PEM"))
}

fn key_set(path: &Path) -> Result<JwkSet, KeyError> {
    const KEY: &str = "jwks_file";
    let text = read(KEY, path)?;
    let set: JwkSet = serde_json::from_slice(&text).map_err(|e| unusable(KEY, path, e))?;
    if set.keys.is_empty() {
        return Err(unusable(KEY, path, "the key set is empty"));
    }
    for jwk in &set.keys {
        DecodingKey::from_jwk(jwk).map_err(|e| unusable(KEY, path, e))?;
    }
    Ok(set)
}
