//! Finding the master through Redis Sentinel: the sentinel client a
//! `redis+sentinel://` URL describes, and what a failed lookup means.

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, TlsMode};

use super::QueueError;
use crate::spec::SentinelUrl;

/// What a sentinel client is built from. Each `Connector` builds its own,
/// since its cached connections to the sentinels are driven by the runtime
/// that made them (the heartbeat thread has a runtime of its own).
pub(super) struct SentinelSpec {
    pub(super) url: SentinelUrl,
    pub(super) ca: Option<Vec<u8>>,
}

impl SentinelSpec {
    pub(super) fn client(&self) -> redis::RedisResult<SentinelClient> {
        let url = &self.url;
        let sentinels = url.sentinels.iter().map(|(host, port)| match url.tls {
            true => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
            false => ConnectionAddr::Tcp(host.clone(), *port),
        });
        let mut b =
            SentinelClientBuilder::new(sentinels, &url.service, SentinelServerType::Master)?
                .set_client_to_redis_db(url.db);
        if let Some(user) = &url.username {
            b = b.set_client_to_redis_username(user);
        }
        if let Some(password) = &url.password {
            b = b.set_client_to_redis_password(password);
        }
        if let Some(user) = &url.sentinel_username {
            b = b.set_client_to_sentinel_username(user);
        }
        if let Some(password) = &url.sentinel_password {
            b = b.set_client_to_sentinel_password(password);
        }
        if url.tls {
            b = b
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(root) = &self.ca {
                let certs = || redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root.clone()),
                };
                b = b
                    .set_client_to_redis_certificates(certs())
                    .set_client_to_sentinel_certificates(certs());
            }
        }
        b.build()
    }
}

/// A failed master lookup. While a failover runs the sentinels name no
/// usable master (the old one is down, none promoted yet): an outage to wait
/// out, like an unreachable server, not a refusal.
pub(super) fn no_master(service: &str, e: redis::RedisError) -> QueueError {
    if super::auth_failure(&e).is_some() {
        return QueueError::redis("connect", e);
    }
    QueueError::Unavailable {
        op: "connect",
        message: format!("no master for {service:?} from the sentinels: {e}"),
    }
}
