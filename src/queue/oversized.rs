//! The stand-in `fetch.lua` hands over in place of a payload over the
//! worker's size limit: its size, SHA-1, head and tail, never the payload
//! itself, so one hostile 10 MB push costs the worker a few kilobytes.

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
    /// The payload's last bytes (`OVERSIZED_TAIL_BYTES`).
    pub tail: &'a [u8],
}

impl<'a> Oversized<'a> {
    /// Reads a stand-in; `None` for anything else (an ordinary payload, or
    /// one that merely starts like a stand-in but is malformed).
    pub fn decode(payload: &'a [u8]) -> Option<Self> {
        let rest = payload.strip_prefix(MARK)?;
        let (bytes, rest) = number(rest)?;
        // 40 hex digits, then ':'.
        let (sha1, rest) = (rest.get(..40)?, rest.get(40..)?.strip_prefix(b":")?);
        let sha1 = std::str::from_utf8(sha1).ok()?;
        if !sha1.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let (head_len, rest) = number(rest)?;
        let head_len = usize::try_from(head_len).ok()?;
        let (head, tail) = (rest.get(..head_len)?, rest.get(head_len..)?);
        Some(Oversized {
            bytes,
            sha1,
            head,
            tail,
        })
    }

    /// The stand-in `fetch.lua` writes (for tests and tools that build one
    /// without Redis).
    pub fn encode(bytes: u64, sha1: &str, head: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut out = MARK.to_vec();
        out.extend_from_slice(format!("{bytes}:{sha1}:{}:", head.len()).as_bytes());
        out.extend_from_slice(head);
        out.extend_from_slice(tail);
        out
    }
}

/// A decimal number and what follows its ':'.
fn number(text: &[u8]) -> Option<(u64, &[u8])> {
    let colon = text.iter().position(|b| *b == b':')?;
    let n = std::str::from_utf8(&text[..colon]).ok()?.parse().ok()?;
    Some((n, &text[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_fetch_script_writes() {
        let sha1 = "a".repeat(40);
        let s = Oversized::encode(10_485_760, &sha1, b"{\"id\":\"j:1\",", b",\"x\":1}");
        let o = Oversized::decode(&s).unwrap();
        assert_eq!(o.bytes, 10_485_760);
        assert_eq!(o.sha1, sha1);
        assert_eq!(o.head, b"{\"id\":\"j:1\",");
        assert_eq!(o.tail, b",\"x\":1}");
        // An empty head, and parts holding colons and NULs, read as well.
        let s = Oversized::encode(3, &sha1, b"", b"");
        assert_eq!(Oversized::decode(&s).unwrap().head, b"");
        let s = Oversized::encode(3, &sha1, b"a:\0b", b":9:");
        let o = Oversized::decode(&s).unwrap();
        assert_eq!((o.head, o.tail), (&b"a:\0b"[..], &b":9:"[..]));
    }

    #[test]
    fn anything_else_is_no_stand_in() {
        let sha1 = "a".repeat(40);
        let ok = format!("\0toolq:oversized:12:{sha1}:");
        let short = format!("{ok}5:abc");
        for p in [
            &b"{\"tool\":\"echo\",\"args\":{}}"[..],
            b"\0toolq:oversized:",
            b"\0toolq:oversized:x:aaaa",
            b"\0toolq:oversized:12:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz:0:",
            ok.as_bytes(),
            short.as_bytes(),
        ] {
            assert_eq!(Oversized::decode(p), None, "{p:?}");
        }
    }
}
