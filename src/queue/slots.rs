//! Pipelines on a Redis Cluster: one whose commands name keys of several
//! slots (the queue registry beside a queue's keys, a cache entry beside
//! its fill lock, a worker's catalog entry beside the catalog) is sent as
//! runs of one slot each, in order, where the cluster client would refuse
//! it whole (`CROSSSLOT`).

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, Value};

/// A plain (not `MULTI`) pipeline whose commands name keys of more than
/// one slot, cut into runs of consecutive commands of one slot each, in
/// order; `None` when it all goes to one node. A pipeline promises no
/// atomicity, and the runs are sent one after the other, so the commands
/// still run in their order. A keyless command joins the run before it
/// (`WAIT` then counts the replicas of the node that took the writes before
/// it), except `SCRIPT LOAD`, which joins the run after it (whose node runs
/// the script).
pub(super) fn runs(pipeline: &redis::Pipeline) -> Option<Vec<redis::Pipeline>> {
    if pipeline.is_transaction() {
        return None;
    }
    let slots: Vec<Option<Slot>> = pipeline.cmd_iter().map(slot_of).collect();
    let mut keyed = slots.iter().flatten();
    let first = keyed.next()?;
    if keyed.all(|s| s == first) {
        return None;
    }
    let mut out: Vec<(Option<Slot>, redis::Pipeline)> = Vec::new();
    let mut forward: Vec<Cmd> = Vec::new();
    for (cmd, slot) in pipeline.cmd_iter().zip(slots) {
        match slot {
            None if is_script_load(cmd) || out.is_empty() => forward.push(cmd.clone()),
            None => {
                if let Some((_, run)) = out.last_mut() {
                    run.add_command(cmd.clone());
                }
            }
            Some(slot) => {
                if out.last().is_none_or(|(s, _)| *s != Some(slot)) {
                    out.push((Some(slot), redis::Pipeline::new()));
                }
                if let Some((_, run)) = out.last_mut() {
                    for c in forward.drain(..) {
                        run.add_command(c);
                    }
                    run.add_command(cmd.clone());
                }
            }
        }
    }
    if let Some((_, run)) = out.last_mut() {
        for c in forward.drain(..) {
            run.add_command(c);
        }
    }
    Some(out.into_iter().map(|(_, run)| run).collect())
}

pub(super) async fn send_runs(
    c: &mut ClusterConnection,
    runs: Vec<redis::Pipeline>,
) -> redis::RedisResult<Vec<Value>> {
    let mut out = Vec::new();
    for run in runs {
        out.extend(c.req_packed_commands(&run, 0, run.len()).await?);
    }
    Ok(out)
}

/// The slot of the key a command names, if it names one: the first
/// argument after the name, or after the script and key count of `EVAL`
/// and `EVALSHA`. toolq pipelines only such commands, `WAIT` and
/// `SCRIPT LOAD`.
fn slot_of(cmd: &Cmd) -> Option<Slot> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?;
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if is("EVALSHA") || is("EVAL") {
        let _script = args.next()?;
        let keys: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
        return (keys > 0).then(|| args.next().map(Slot::for_key)).flatten();
    }
    if is("WAIT") || is("SCRIPT") || is("PING") || is("TIME") || is("INFO") {
        return None;
    }
    args.next().map(Slot::for_key)
}

fn is_script_load(cmd: &Cmd) -> bool {
    cmd.args_iter()
        .next()
        .is_some_and(|a| matches!(a, redis::Arg::Simple(n) if n.eq_ignore_ascii_case(b"SCRIPT")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_over_two_slots_goes_in_runs_with_wait_and_script_load_placed() {
        let mut pipe = redis::pipe();
        pipe.sadd("toolq:queues", "q")
            .cmd("SCRIPT")
            .arg("LOAD")
            .arg("return 1")
            .lpush("toolq:{q}:pending", "a")
            .cmd("EVALSHA")
            .arg("f00")
            .arg(1)
            .arg("toolq:{q}:delayed")
            .cmd("WAIT")
            .arg(1)
            .arg(100);
        let cut = runs(&pipe).expect("two slots");
        let names = |p: &redis::Pipeline| {
            p.cmd_iter()
                .map(|c| match c.args_iter().next() {
                    Some(redis::Arg::Simple(n)) => String::from_utf8_lossy(n).into_owned(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&cut[0]), ["SADD"]);
        assert_eq!(names(&cut[1]), ["SCRIPT", "LPUSH", "EVALSHA", "WAIT"]);
        let mut one = redis::pipe();
        one.lpush("toolq:{q}:pending", "a")
            .zcard("toolq:{q}:delayed");
        assert!(runs(&one).is_none(), "one slot goes whole");
    }
}
