//! Whether an address stays on this machine: a password or an open gateway
//! is only safe in clear text when it does.

use std::net::{IpAddr, SocketAddr};

/// True for `localhost`, `127.0.0.0/8` and `::1` (brackets allowed).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// True when a `HOST:PORT` listen address is loopback (`127.0.0.1:8080`,
/// `[::1]:8080`, `localhost:8080`); anything unreadable counts as exposed.
pub fn is_loopback_addr(addr: &str) -> bool {
    let addr = addr.trim();
    if let Ok(socket) = addr.parse::<SocketAddr>() {
        return socket.ip().is_loopback();
    }
    addr.rsplit_once(':')
        .is_some_and(|(host, _port)| is_loopback_host(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_loopback_from_the_network() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "redis",
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "localhost.example.com",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
        assert!(is_loopback_addr("127.0.0.1:8080"));
        assert!(is_loopback_addr("[::1]:8080"));
        assert!(is_loopback_addr("localhost:8080"));
        assert!(!is_loopback_addr("0.0.0.0:8080"));
        assert!(!is_loopback_addr("[::]:8080"));
        assert!(!is_loopback_addr("gateway.internal:8080"));
        assert!(!is_loopback_addr("nonsense"));
    }
}
