//! The stand-in `fetch.lua` hands over in place of a payload over the
//! worker's size limit: its size, SHA-1 and head, never the payload itself,
//! so one hostile 10 MB push costs the worker a few kilobytes, not 10 MB.

/// How every stand-in starts. The NUL byte keeps a stand-in from ever
/// parsing as JSON (a producer pushing one gets it buried, as anything
/// else that is not a job).
const MARK: &[u8] = b"\0toolq:oversized:";

/// What a stand-in says of the payload it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized<'a> {
    /// The payload's length in bytes.
    pub bytes: u64,
    /// SHA-1 of the whole payload, lowercase hex (Redis's `sha1hex`).
    pub sha1: &'a str,
    /// The payload's first bytes (as many as the fetch was asked to keep).
    pub head: &'a [u8],
}

impl<'a> Oversized<'a> {
    /// Reads a stand-in; `None` for anything else (an ordinary payload, or
    /// one that merely starts like a stand-in but is malformed).
    pub fn decode(payload: &'a [u8]) -> Option<Self> {
        let rest = payload.strip_prefix(MARK)?;
        let colon = rest.iter().position(|b| *b == b':')?;
        let bytes = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
        let rest = &rest[colon + 1..];
        // 40 hex digits, then ':' and the head.
        let (sha1, head) = (rest.get(..40)?, rest.get(40..)?.strip_prefix(b":")?);
        let sha1 = std::str::from_utf8(sha1).ok()?;
        if !sha1.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Oversized { bytes, sha1, head })
    }

    /// The stand-in `fetch.lua` writes for `payload` (for tests and tools
    /// that build one without Redis).
    pub fn encode(bytes: u64, sha1: &str, head: &[u8]) -> Vec<u8> {
        let mut out = MARK.to_vec();
        out.extend_from_slice(format!("{bytes}:{sha1}:").as_bytes());
        out.extend_from_slice(head);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_fetch_script_writes() {
        let sha1 = "a".repeat(40);
        let s = Oversized::encode(10_485_760, &sha1, b"{\"id\":\"j:1\",");
        let o = Oversized::decode(&s).unwrap();
        assert_eq!(o.bytes, 10_485_760);
        assert_eq!(o.sha1, sha1);
        assert_eq!(o.head, b"{\"id\":\"j:1\",");
        // An empty head, and a head holding colons and NULs, read as well.
        let s = Oversized::encode(3, &sha1, b"");
        assert_eq!(Oversized::decode(&s).unwrap().head, b"");
        let s = Oversized::encode(3, &sha1, b"a:\0b");
        assert_eq!(Oversized::decode(&s).unwrap().head, b"a:\0b");
    }

    #[test]
    fn anything_else_is_no_stand_in() {
        for p in [
            &b"{\"tool\":\"echo\",\"args\":{}}"[..],
            b"\0toolq:oversized:",
            b"\0toolq:oversized:x:aaaa",
            b"\0toolq:oversized:12:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz:",
            b"\0toolq:oversized:12:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(Oversized::decode(p), None, "{p:?}");
        }
    }
}
