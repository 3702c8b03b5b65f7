//! The `redis+sentinel://` URL form: where the sentinels are, which master
//! they watch, and the credentials for each. The `redis` crate connects
//! through sentinels but reads no URL for it, so toolq defines the form:
//!
//! `redis+sentinel://[[user]:password@]host[:port][,host[:port]]…/service[/db][?sentinel_username=…&sentinel_password=…]`
//!
//! The user and password are the master's (as in a `redis://` URL); the
//! sentinels get `sentinel_username` / `sentinel_password`, or nothing.
//! `rediss+sentinel://` speaks TLS to the sentinels and to the master.

/// A sentinel's port when the URL gives none.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// A parsed `redis+sentinel://` URL. Holds passwords: never print it
/// (`Debug` masks them); show the URL through `mask_url`.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// `rediss+sentinel://`: TLS to the sentinels and to the master.
    pub tls: bool,
    /// `(host, port)` of each sentinel, in the order given.
    pub sentinels: Vec<(String, u16)>,
    /// The master's name in the sentinels' configuration (`sentinel monitor`).
    pub service: String,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |p: &Option<String>| p.as_ref().map(|_| "***");
        f.debug_struct("SentinelUrl")
            .field("tls", &self.tls)
            .field("sentinels", &self.sentinels)
            .field("service", &self.service)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &masked(&self.password))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &masked(&self.sentinel_password))
            .finish()
    }
}

impl SentinelUrl {
    /// Whether `url` is of the sentinel form (it may still be malformed).
    pub fn is_sentinel(url: &str) -> bool {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        scheme.eq_ignore_ascii_case("redis+sentinel")
            || scheme.eq_ignore_ascii_case("rediss+sentinel")
    }

    /// Parses the form above. The error says what is wrong without
    /// repeating the URL (the caller names it, masked).
    pub fn parse(url: &str) -> Result<SentinelUrl, String> {
        let (scheme, rest) = url.split_once("://").ok_or("is not a URL (no scheme://)")?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "redis+sentinel" => false,
            "rediss+sentinel" => true,
            _ => return Err("is not a redis+sentinel:// or rediss+sentinel:// URL".into()),
        };
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, rest),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let sentinels = hosts
            .split(',')
            .map(host_port)
            .collect::<Result<Vec<_>, _>>()?;
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let service = segments
            .next()
            .map(percent_decode)
            .ok_or("names no service: add /<master name> after the sentinels")?;
        let db = match segments.next() {
            Some(db) => db
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| format!("database {db:?} is not a number"))?,
            None => 0,
        };
        if segments.next().is_some() {
            return Err("has more than /<service>/<db> in its path".into());
        }
        let (username, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (non_empty(user), non_empty(pass)),
                None => (non_empty(u), None),
            },
            None => (None, None),
        };
        let mut parsed = SentinelUrl {
            tls,
            sentinels,
            service,
            db,
            username,
            password,
            sentinel_username: None,
            sentinel_password: None,
        };
        for kv in query.into_iter().flat_map(|q| q.split('&')) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "sentinel_username" => parsed.sentinel_username = non_empty(v),
                "sentinel_password" => parsed.sentinel_password = non_empty(v),
                "" => {}
                other => {
                    return Err(format!(
                        "has an unknown parameter {other:?} (known: sentinel_username, sentinel_password)"
                    ))
                }
            }
        }
        Ok(parsed)
    }
}

/// `host[:port]` or `[v6]:port`; the sentinel port by default.
fn host_port(text: &str) -> Result<(String, u16), String> {
    if text.is_empty() {
        return Err("names an empty sentinel address".into());
    }
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, tail) = v6
            .split_once(']')
            .ok_or_else(|| format!("sentinel address {text:?} lacks its closing ]"))?;
        (host, tail.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("sentinel address {text:?} has no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("sentinel address {text:?} has a bad port"))?,
        None => DEFAULT_SENTINEL_PORT,
    };
    Ok((host.to_owned(), port))
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| percent_decode(text))
}

fn percent_decode(text: &str) -> String {
    super::redis_url::percent_decode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sentinels_service_db_and_both_credentials() {
        let u = SentinelUrl::parse(
            "redis+sentinel://w:p%40ss@s1:26380,s2,[::1]:26381/jobs/2?sentinel_password=t0p&sentinel_username=sen",
        )
        .unwrap();
        assert!(!u.tls);
        assert_eq!(
            u.sentinels,
            [
                ("s1".to_owned(), 26380),
                ("s2".to_owned(), DEFAULT_SENTINEL_PORT),
                ("::1".to_owned(), 26381)
            ]
        );
        assert_eq!((u.service.as_str(), u.db), ("jobs", 2));
        assert_eq!(u.username.as_deref(), Some("w"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.sentinel_username.as_deref(), Some("sen"));
        assert_eq!(u.sentinel_password.as_deref(), Some("t0p"));
        let shown = format!("{u:?}");
        assert!(!shown.contains("p@ss") && !shown.contains("t0p"), "{shown}");
    }

    #[test]
    fn tls_and_defaults() {
        let u = SentinelUrl::parse("rediss+sentinel://:pw@h/m").unwrap();
        assert!(u.tls);
        assert_eq!(u.db, 0);
        assert_eq!(u.username, None);
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert!(SentinelUrl::is_sentinel("REDIS+SENTINEL://h/m"));
        assert!(!SentinelUrl::is_sentinel("redis://h"));
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for (url, why) in [
            ("redis+sentinel://h1,h2", "names no service"),
            ("redis+sentinel://h1,,h2/m", "empty sentinel address"),
            ("redis+sentinel://h:0/m", "bad port"),
            ("redis+sentinel://h:x/m", "bad port"),
            ("redis+sentinel://h/m/x", "not a number"),
            ("redis+sentinel://h/m/1/2", "more than"),
            ("redis+sentinel://h/m?master=x", "unknown parameter"),
            ("redis://h/m", "is not a redis+sentinel"),
        ] {
            let e = SentinelUrl::parse(url).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
