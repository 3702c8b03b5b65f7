//! Redis URLs as they may be shown (in logs, errors and `toolq config`), and
//! the parts of one that decide whether its password would travel in clear
//! text.

/// Replaces the password (and a lone username used as password) in a Redis
/// URL with `***`, for logs and error messages. Defensive: the userinfo runs
/// to the last `@` (an unescaped `/`, `?` or `#` in a password must not end
/// it early), and `pass`/`password` query parameters (unix socket URLs) are
/// masked too.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') || url.contains("pass") {
            "***".to_owned()
        } else {
            url.to_owned()
        };
    };
    let (userinfo, host_and_tail) = match rest.rsplit_once('@') {
        Some((user, tail)) => (Some(user), tail),
        None => (None, rest),
    };
    let masked_user = userinfo.map(|u| match u.split_once(':') {
        Some((user, _)) => format!("{user}:***@"),
        None => "***@".to_owned(),
    });
    let tail = match host_and_tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_password_key(k) => {
                        format!("{k}=***")
                    }
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => host_and_tail.to_owned(),
    };
    format!("{scheme}://{}{tail}", masked_user.unwrap_or_default())
}

/// The parts of a Redis URL that say whether a password is in it and where
/// it would travel, read the way [`mask_url`] reads them (the userinfo runs
/// to the last `@`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub scheme: &'a str,
    userinfo: Option<&'a str>,
    /// `host[:port][/db][?query]`, or a socket path and its query.
    rest: &'a str,
}

impl<'a> UrlParts<'a> {
    /// `None` when `url` has no `scheme://`.
    pub fn parse(url: &'a str) -> Option<UrlParts<'a>> {
        let (scheme, rest) = url.split_once("://")?;
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, rest),
        };
        Some(UrlParts {
            scheme,
            userinfo,
            rest,
        })
    }

    /// `unix://` and `redis+unix://`: a local socket, no network.
    pub fn is_unix_socket(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("unix") || self.scheme.eq_ignore_ascii_case("redis+unix")
    }

    /// Whether the URL carries a password: `user:pass@` (a lone name before
    /// `@` is a user name), or `pass=` / `password=` on a socket URL.
    pub fn has_password(&self) -> bool {
        let in_userinfo = self
            .userinfo
            .and_then(|u| u.split_once(':'))
            .is_some_and(|(_, pass)| !pass.is_empty());
        in_userinfo || self.password_param().is_some()
    }

    /// The host name or address, without port or brackets' content changed
    /// (`[::1]` stays bracketed); empty for socket URLs.
    pub fn host(&self) -> &'a str {
        if self.is_unix_socket() {
            return "";
        }
        let authority = self.rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.starts_with('[') {
            return match authority.find(']') {
                Some(end) => &authority[..=end],
                None => authority,
            };
        }
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _port)| host)
    }

    /// The password, percent-decoded: `user:pass@`, or `pass=` on a socket
    /// URL. For the worker's scrubber, which keeps it out of stored outputs.
    pub fn password(&self) -> Option<String> {
        let in_userinfo = self
            .userinfo
            .and_then(|u| u.split_once(':'))
            .map(|(_, pass)| pass)
            .filter(|pass| !pass.is_empty());
        in_userinfo
            .or_else(|| self.password_param())
            .map(percent_decode)
    }

    fn password_param(&self) -> Option<&'a str> {
        let (_, query) = self.rest.split_once('?')?;
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            is_password_key(k).then_some(v).filter(|v| !v.is_empty())
        })
    }
}

/// `url` with `password` added, percent-encoded: into the userinfo of a TCP
/// URL (after its user name, if any), or as `pass=` on a socket URL. A URL
/// that holds a password already is refused rather than silently changed.
pub fn with_password(url: &str, password: &str) -> Result<String, String> {
    let parts = UrlParts::parse(url).ok_or("is not a URL (no scheme://)")?;
    if parts.has_password() {
        return Err("holds a password already".into());
    }
    let encoded = percent_encode(password);
    let scheme = parts.scheme;
    let rest = parts.rest;
    Ok(if parts.is_unix_socket() {
        let join = if rest.contains('?') { '&' } else { '?' };
        let user = parts.userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        format!("{scheme}://{user}{rest}{join}pass={encoded}")
    } else {
        let user = parts.userinfo.unwrap_or_default().trim_end_matches(':');
        format!("{scheme}://{user}:{encoded}@{rest}")
    })
}

/// Every byte but the URL-unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A query parameter holding a password: `pass` and `password` (socket
/// URLs), `sentinel_password` (`redis+sentinel://`, see `SentinelUrl`).
fn is_password_key(key: &str) -> bool {
    ["pass", "password", "sentinel_password"]
        .iter()
        .any(|k| key.eq_ignore_ascii_case(k))
}

/// `%XX` sequences as their bytes; anything else (a stray `%`) as written.
pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_password_decoded() {
        let password = |u| UrlParts::parse(u).unwrap().password();
        assert_eq!(
            password("redis://w:p%40ss%3Aw%2Frd@redis:6379").as_deref(),
            Some("p@ss:w/rd")
        );
        assert_eq!(password("unix:///s.sock?pass=x%").as_deref(), Some("x%"));
        assert_eq!(password("redis://user@redis"), None);
        assert_eq!(password("redis://u:@redis"), None);
    }

    #[test]
    fn reads_password_and_host() {
        let parts = |u| UrlParts::parse(u).unwrap();
        assert!(parts("redis://u:p@redis:6379/0").has_password());
        assert!(parts("redis://:p@10.0.0.1").has_password());
        assert!(!parts("redis://user@redis").has_password());
        assert!(!parts("redis://redis:6379").has_password());
        assert!(parts("unix:///run/redis.sock?pass=x").has_password());
        assert_eq!(parts("redis://u:p@redis:6379/0").host(), "redis");
        assert_eq!(parts("redis://u:a@b@host").host(), "host");
        assert_eq!(parts("redis://[::1]:6379").host(), "[::1]");
        assert_eq!(parts("rediss://h?protocol=resp3").host(), "h");
        assert_eq!(parts("unix:///run/redis.sock").host(), "");
        assert!(UrlParts::parse("no-scheme").is_none());
    }

    #[test]
    fn adds_a_percent_encoded_password() {
        assert_eq!(
            with_password("redis://worker@redis:6379", "p@ss:w/rd").unwrap(),
            "redis://worker:p%40ss%3Aw%2Frd@redis:6379"
        );
        assert_eq!(
            with_password("rediss://redis:6380/1", "s3cret").unwrap(),
            "rediss://:s3cret@redis:6380/1"
        );
        assert_eq!(
            with_password("unix:///run/r.sock?db=1", "a b").unwrap(),
            "unix:///run/r.sock?db=1&pass=a%20b"
        );
        assert!(with_password("redis://u:old@h", "new").is_err());
        assert!(with_password("h:6379", "new").is_err());
    }

    #[test]
    fn masks_passwords() {
        assert_eq!(
            mask_url("redis://user:s3cret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(mask_url("rediss://:s3cret@host"), "rediss://:***@host");
        assert_eq!(mask_url("redis://tok@host"), "redis://***@host");
        assert_eq!(mask_url("redis://p:a@b@host"), "redis://p:***@host");
        assert_eq!(mask_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(
            mask_url("redis://u:a/b?c#d@host:1/0"),
            "redis://u:***@host:1/0"
        );
        assert_eq!(
            mask_url("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(mask_url("u:s3cret@host"), "***");
        assert_eq!(
            mask_url("redis+sentinel://:m4ster@s1:26379,s2/jobs?sentinel_password=s3nt"),
            "redis+sentinel://:***@s1:26379,s2/jobs?sentinel_password=***"
        );
    }
}
