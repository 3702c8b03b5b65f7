//! Raw TCP connections against a capped HTTP port (the side port, the
//! gateway): held open doing nothing, and watched until the server closes
//! them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Reads from a connection the server should have closed: true once it
/// has (EOF or reset), false while it is still open after `within`.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        let left = within.saturating_sub(start.elapsed());
        match timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (a 408 or a response to a full request): read on.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Opens `n` connections that send `bytes` (maybe nothing) and then
/// nothing more.
pub async fn held_push_idle(held: &mut Vec<TcpStream>, addr: SocketAddr, n: usize, bytes: &[u8]) {
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if !bytes.is_empty() {
            s.write_all(bytes).await.unwrap();
        }
        held.push(s);
    }
}
