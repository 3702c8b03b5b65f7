//! Redis URLs as they may be shown: in logs, errors and `toolq config`.

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
                    Some((k, _))
                        if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                    {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
