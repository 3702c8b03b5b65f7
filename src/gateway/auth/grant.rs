//! What a token may do: the `toolq` claim. A token without it may do
//! nothing, so a token minted for another service on the same key cannot
//! reach the queue by accident.

use serde::Deserialize;

/// `{"tools": ["calculator", "time.*"], "queues": ["default"], "results": true, "admin": false}`
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Grant {
    /// Tool names or glob patterns (`*` any run of characters, `?` one).
    pub tools: Vec<String>,
    /// Queue names or glob patterns.
    pub queues: Vec<String>,
    /// May read results: wait for them, and `GET /jobs/{id}`.
    pub results: bool,
    /// May use the operator console and control endpoints.
    pub admin: bool,
}

impl Grant {
    /// Everything: the grant of `--no-auth` on loopback.
    pub fn everything() -> Self {
        Grant {
            tools: vec!["*".into()],
            queues: vec!["*".into()],
            results: true,
            admin: true,
        }
    }

    pub fn may_use_tool(&self, tool: &str) -> bool {
        self.tools.iter().any(|p| glob_match(p, tool))
    }

    pub fn may_use_queue(&self, queue: &str) -> bool {
        self.queues.iter().any(|p| glob_match(p, queue))
    }
}

/// `*` matches any run of characters (`.` included), `?` exactly one; every
/// other character matches itself. Iterative with one backtrack point, so a
/// hostile pattern costs O(pattern × name) at worst.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match("calculator", "calculator"));
        assert!(!glob_match("calculator", "calculator2"));
        assert!(!glob_match("calc", "calculator"));
        assert!(glob_match("time.*", "time.now"));
        assert!(!glob_match("time.*", "timex.now"));
        assert!(glob_match("*", "anything.at.all"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("q?", "q1"));
        assert!(!glob_match("q?", "q"));
        assert!(!glob_match("", "x"));
        assert!(glob_match("", ""));
    }

    #[test]
    fn an_empty_grant_allows_nothing() {
        let g = Grant::default();
        assert!(!g.may_use_tool("calculator") && !g.may_use_queue("default"));
        assert!(!g.results && !g.admin);
        let g: Grant = serde_json::from_str(r#"{"tools":["calc*"],"queues":["default"]}"#).unwrap();
        assert!(g.may_use_tool("calculator") && !g.may_use_tool("weather"));
        assert!(g.may_use_queue("default") && !g.may_use_queue("other"));
        assert!(!g.results);
    }
}
