//! Where the side port listens, as `--http-addr` / `TOOLQ_HTTP_ADDR` spell it.
//!
//! `off` exists because some deployments (one-shot jobs, several workers in
//! one network namespace) must not open a port at all.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// An `--http-addr` value that is neither `IP:PORT` nor `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "health.http_addr: invalid address {input:?}: expected IP:PORT \
     (e.g. 0.0.0.0:9464 or [::1]:9464) or \"off\""
)]
pub struct InvalidAddr {
    pub input: String,
}

/// The Prometheus-registry port for "toolq", on loopback: the side port has
/// no authentication, so reaching it from elsewhere is a deployment's
/// explicit choice (the Docker image and compose set `0.0.0.0:9464`).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9464";

/// The side port's address, or no side port at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAddr {
    Off,
    Addr(SocketAddr),
}

impl HttpAddr {
    /// The address to bind, `None` when the side port is disabled.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            HttpAddr::Off => None,
            HttpAddr::Addr(a) => Some(*a),
        }
    }
}

impl Default for HttpAddr {
    fn default() -> Self {
        HttpAddr::Addr(SocketAddr::from(([127, 0, 0, 1], 9464)))
    }
}

impl FromStr for HttpAddr {
    type Err = InvalidAddr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(HttpAddr::Off);
        }
        t.parse::<SocketAddr>()
            .map(HttpAddr::Addr)
            .map_err(|_| InvalidAddr {
                input: s.to_string(),
            })
    }
}

/// Round-trips through [`FromStr`], so a value can be logged and re-read.
impl fmt::Display for HttpAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpAddr::Off => f.write_str("off"),
            HttpAddr::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// Lets figment read `http_addr` from TOML or `TOOLQ_HTTP_ADDR` with the same
/// rules and message as the command line.
impl<'de> serde::Deserialize<'de> for HttpAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_in_any_case() {
        for s in ["off", "OFF", "Off", " off "] {
            assert_eq!(s.parse::<HttpAddr>().unwrap(), HttpAddr::Off, "{s:?}");
        }
    }

    #[test]
    fn ipv4_and_ipv6_addresses() {
        let a: HttpAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(a.socket_addr(), Some("127.0.0.1:8080".parse().unwrap()));
        let b: HttpAddr = "[::1]:9464".parse().unwrap();
        assert_eq!(b.socket_addr(), Some("[::1]:9464".parse().unwrap()));
        let c: HttpAddr = "0.0.0.0:0".parse().unwrap();
        assert_eq!(c.socket_addr().map(|a| a.port()), Some(0));
    }

    #[test]
    fn default_matches_the_documented_string() {
        assert_eq!(
            HttpAddr::default(),
            DEFAULT_HTTP_ADDR.parse::<HttpAddr>().unwrap()
        );
        assert_eq!(HttpAddr::default().to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(HttpAddr::Off.socket_addr(), None);
    }

    #[test]
    fn display_round_trips() {
        for s in ["off", "127.0.0.1:1", "[::1]:9464"] {
            let a: HttpAddr = s.parse().unwrap();
            assert_eq!(a.to_string().parse::<HttpAddr>().unwrap(), a);
        }
    }

    #[test]
    fn junk_is_rejected_with_a_message_naming_the_input() {
        let junk = [
            "",
            "   ",
            "of",
            "offf",
            "on",
            "none",
            "9464",
            ":9464",
            "localhost:9464",
            "0.0.0.0",
            "0.0.0.0:",
            "0.0.0.0:70000",
            "1.2.3.4.5:80",
            "::1:9464",
            "http://0.0.0.0:9464",
            "0.0.0.0:9464/metrics",
        ];
        for s in junk {
            let err = s.parse::<HttpAddr>().unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.input, s, "{s:?}");
            assert!(msg.contains(&format!("{s:?}")), "{msg}");
            assert!(msg.contains("off") && msg.contains("IP:PORT"), "{msg}");
        }
    }

    #[test]
    fn deserializes_from_a_string() {
        let a: HttpAddr = serde_json::from_str("\"OFF\"").unwrap();
        assert_eq!(a, HttpAddr::Off);
        let err = serde_json::from_str::<HttpAddr>("\"nope\"").unwrap_err();
        assert!(err.to_string().contains("IP:PORT"), "{err}");
    }
}
