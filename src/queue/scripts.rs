//! The Lua scripts, one file per atomic operation, compiled into the binary.
//! `redis::Script` sends EVALSHA and loads the script on NOSCRIPT, so a Redis
//! restart (which forgets scripts) needs no special handling.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("scripts/", $file))));
    };
}

script!(FETCH, "fetch.lua");
script!(ACK, "ack.lua");
script!(RETRY, "retry.lua");
script!(BURY, "bury.lua");
script!(DEFER, "defer.lua");
script!(PROMOTE, "promote.lua");
script!(HEARTBEAT, "heartbeat.lua");
script!(STALE_WORKERS, "stale_workers.lua");
script!(RECOVER, "recover.lua");
script!(REQUEUE, "requeue.lua");
script!(RATE_LIMIT, "rate_limit.lua");
script!(CACHE_UNLOCK, "cache_unlock.lua");
script!(ENQUEUE, "enqueue.lua");
script!(DEAD_RETRY, "dead_retry.lua");
script!(DEAD_PURGE, "dead_purge.lua");
