//! The Lua scripts, one file per atomic operation, compiled into the binary.
//! `redis::Script` sends EVALSHA and loads the script on NOSCRIPT, so a Redis
//! restart (which forgets scripts) needs no special handling. Scripts that
//! settle or read held jobs get `held.lua` (the active hash's layout and its
//! helpers, and `batch_callback.lua`, the batch callback's counting)
//! prepended, those that add to the dead set `dead_set.lua` (its caps), and
//! those that give idle workers something to do `wake.lua` (the signal):
//! Redis scripts cannot include one another.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("scripts/", $file))));
    };
    ($name:ident, $file:literal, held_find) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/held.lua"),
                include_str!("scripts/batch_callback.lua"),
                include_str!("scripts/find.lua"),
                include_str!(concat!("scripts/", $file))
            ))
        });
    };
    ($name:ident, $file:literal, held_dead) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/held.lua"),
                include_str!("scripts/batch_callback.lua"),
                include_str!("scripts/dead_set.lua"),
                include_str!(concat!("scripts/", $file))
            ))
        });
    };
    ($name:ident, $file:literal, callback) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/batch_callback.lua"),
                include_str!(concat!("scripts/", $file))
            ))
        });
    };
    ($name:ident, $file:literal, held_wake) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/held.lua"),
                include_str!("scripts/batch_callback.lua"),
                include_str!("scripts/wake.lua"),
                include_str!(concat!("scripts/", $file))
            ))
        });
    };
    ($name:ident, $file:literal, wake) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/wake.lua"),
                include_str!(concat!("scripts/", $file))
            ))
        });
    };
    ($name:ident, $file:literal, held) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/held.lua"),
                include_str!("scripts/batch_callback.lua"),
                include_str!(concat!("scripts/", $file))
            ))
        });
    };
}

script!(FETCH, "fetch.lua");
script!(ACK, "ack.lua", held);
script!(RETRY, "retry.lua", held_wake);
script!(BURY, "bury.lua", held_dead);
script!(DEFER, "defer.lua", held_wake);
script!(PROMOTE, "promote.lua");
script!(HEARTBEAT, "heartbeat.lua");
script!(STALE_WORKERS, "stale_workers.lua");
script!(TURN, "turn.lua");
script!(SAVE_GAUGES, "save_gauges.lua");
script!(RECOVER, "recover.lua", held_dead);
script!(REQUEUE, "requeue.lua", held);
script!(RATE_LIMIT, "rate_limit.lua");
script!(UNLOCK, "unlock.lua");
script!(ENQUEUE, "enqueue.lua", wake);
script!(DEAD_RETRY, "dead_retry.lua");
script!(DEAD_PURGE, "dead_purge.lua");
script!(HELD_JOBS, "held_jobs.lua", held);
script!(LOCATE, "locate.lua", held_find);
script!(CANCEL, "cancel.lua", held_find);
script!(PROGRESS, "progress.lua");
script!(BATCH_SEAL, "batch_seal.lua", callback);
script!(SCHEDULE_DUE, "schedule_due.lua");
script!(SCHEDULE_TICK, "schedule_tick.lua");
script!(SCHEDULE_PUT, "schedule_put.lua", wake);
script!(SCHEDULE_PAUSE, "schedule_pause.lua", wake);
script!(SCHEDULE_REMOVE, "schedule_remove.lua");
