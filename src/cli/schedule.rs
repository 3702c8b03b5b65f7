//! `toolq schedule add|list|show|pause|resume|remove`: periodic jobs, stored
//! in Redis and ticked by the workers that serve their queue.

use jiff::fmt::strtime;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::Value;

use crate::config::Config;
use crate::producer::Producer;
use crate::queue::{Broker, PutReply};
use crate::schedule::{manage, Definition, Misfire, ScheduleError, View, DEFAULT_MISFIRE_GRACE_S};

use super::{ensure_reachable, queue_name, safe, table, CliError, Exit};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    toolq schedule add nightly-report '0 0 3 * * *' calculator '{\"expression\": \"6*7\"}' --tz Europe/Berlin\n  \
    toolq schedule add heartbeat '*/10 * * * * *' echo '{\"ping\": true}' --queue ops --misfire run_once\n  \
    toolq schedule list\n  \
    toolq schedule pause nightly-report")]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub action: ScheduleAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleAction {
    /// Add a schedule, or change the one of that name (its next tick
    /// follows the new definition; no tick runs twice)
    #[command(
        after_help = "CRON has five fields (minute hour day-of-month month day-of-week) or six, \
seconds first; @hourly, @daily and the like work too. A tick's job id is schedule:<NAME>:<unix seconds>.\n\n\
Examples:\n  \
    toolq schedule add nightly-report '0 0 3 * * *' calculator '{\"expression\": \"6*7\"}' --tz Europe/Berlin\n  \
    toolq schedule add every-5s '*/5 * * * * *' echo '{}' --misfire run_once --max-attempts 1"
    )]
    Add(AddArgs),
    /// Every schedule: next and last run, last job's id and outcome
    #[command(
        after_help = "Example:\n  toolq schedule list --json | jq '.[] | {name, next, last_outcome}'"
    )]
    List {
        /// Print JSON: [{name, queue, definition, paused, source, next, last_tick, last_id, last_outcome}]
        #[arg(long)]
        json: bool,
    },
    /// One schedule's definition and state
    #[command(after_help = "Example:\n  toolq schedule show nightly-report")]
    Show {
        /// The schedule's name
        name: String,
        /// Print JSON (as one element of `list --json`)
        #[arg(long)]
        json: bool,
    },
    /// Stop enqueueing the schedule's ticks (until resumed)
    #[command(after_help = "Example:\n  toolq schedule pause nightly-report")]
    Pause {
        /// The schedule's name
        name: String,
    },
    /// Enqueue the schedule's ticks again, from the first one after now
    /// (those that fell while it was paused do not run)
    #[command(after_help = "Example:\n  toolq schedule resume nightly-report")]
    Resume {
        /// The schedule's name
        name: String,
    },
    /// Delete the schedule (jobs already enqueued stay)
    #[command(after_help = "Example:\n  toolq schedule remove nightly-report")]
    Remove {
        /// The schedule's name
        name: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Unique name: letters, digits, `.`, `_`, `-`
    pub name: String,
    /// Cron expression, e.g. '0 30 9 * * MON-FRI' (09:30:00 on weekdays)
    pub cron: String,
    /// Tool each tick's job runs, e.g. calculator
    pub tool: String,
    /// The tool's arguments as a JSON object
    pub args_json: String,
    /// Queue the jobs go to
    #[arg(long, default_value = "default")]
    pub queue: String,
    /// IANA time zone the cron expression is read in, e.g. Europe/Berlin
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// Ticks no worker enqueued within the grace (workers or Redis down):
    /// run none of them, or run the latest once
    #[arg(long, value_enum, default_value_t = Misfire::Skip)]
    pub misfire: Misfire,
    /// Seconds a tick may be late and still be enqueued
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_MISFIRE_GRACE_S)]
    pub misfire_grace: u64,
    /// Total tries of each tick's job
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Per-attempt limit of each tick's job, in milliseconds
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// How long each tick's result is kept, in seconds (0 keeps none)
    #[arg(long)]
    pub result_ttl_s: Option<u64>,
    /// A JSON object copied into each tick's `meta`, beside `schedule` and
    /// `tick`, e.g. '{"team":"billing"}'
    #[arg(long, value_name = "JSON")]
    pub meta: Option<String>,
}

pub async fn run(config: &Config, args: ScheduleArgs) -> Result<Exit, CliError> {
    // Checked before Redis is touched: bad input is exit 2, whatever Redis does.
    let (action, add) = match args.action {
        ScheduleAction::Add(a) => (None, Some(definition(a)?)),
        other => (Some(other), None),
    };
    let producer = Producer::from_config(config)?;
    let broker: &Broker = producer.broker();
    ensure_reachable(broker).await?;
    if let Some(def) = add {
        let reply = manage::put(broker, &def, manage::Source::Cli)
            .await
            .map_err(to_cli)?;
        let view = manage::show(broker, &def.name).await.map_err(to_cli)?;
        let verb = match reply {
            PutReply::Created => "added",
            PutReply::Unchanged => "unchanged",
            _ => "updated",
        };
        println!(
            "{verb} schedule {}: next run {}",
            def.name,
            when(view.next, &def.tz)
        );
        return Ok(Exit::Success);
    }
    match action {
        None | Some(ScheduleAction::Add(_)) => {}
        Some(ScheduleAction::List { json }) => {
            let views = manage::list(broker).await.map_err(to_cli)?;
            if json {
                println!("{}", serde_json::to_string(&views).unwrap_or_default());
            } else {
                print_list(&views);
            }
        }
        Some(ScheduleAction::Show { name, json }) => {
            let view = manage::show(broker, &name).await.map_err(to_cli)?;
            if json {
                println!("{}", serde_json::to_string(&view).unwrap_or_default());
            } else {
                print_one(&view);
            }
        }
        Some(ScheduleAction::Pause { name }) => {
            manage::pause(broker, &name).await.map_err(to_cli)?;
            println!("paused schedule {name}");
        }
        Some(ScheduleAction::Resume { name }) => {
            let next = manage::resume(broker, &name).await.map_err(to_cli)?;
            let tz = manage::show(broker, &name)
                .await
                .ok()
                .and_then(|v| v.definition)
                .map(|d| d.tz)
                .unwrap_or_else(|| "UTC".into());
            println!(
                "resumed schedule {name}: next run {}",
                when(Some(next), &tz)
            );
        }
        Some(ScheduleAction::Remove { name }) => {
            manage::remove(broker, &name).await.map_err(to_cli)?;
            println!("removed schedule {name}");
        }
    }
    Ok(Exit::Success)
}

/// The definition `add` describes, checked whole (exit 2 when it is not valid).
fn definition(a: AddArgs) -> Result<Definition, CliError> {
    let args: Value = serde_json::from_str(&a.args_json)
        .map_err(|e| CliError::BadInput(format!("ARGS_JSON is not valid JSON: {e}")))?;
    let mut def = Definition::new(&a.name, &a.cron, &a.tool, args);
    def.queue = queue_name(&a.queue)?;
    def.tz = a.tz;
    def.misfire = a.misfire;
    def.misfire_grace_s = a.misfire_grace;
    def.max_attempts = a.max_attempts;
    def.timeout_ms = a.timeout_ms;
    def.result_ttl_s = a.result_ttl_s;
    def.meta = match a.meta {
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| CliError::BadInput(format!("--meta is not valid JSON: {e}")))?,
        ),
        None => None,
    };
    def.validate().map_err(to_cli)?;
    Ok(def)
}

fn to_cli(e: ScheduleError) -> CliError {
    match e {
        ScheduleError::Queue(q) => q.into(),
        ScheduleError::Stored { .. } => CliError::Failed(e.to_string()),
        e => CliError::BadInput(e.to_string()),
    }
}

/// A tick in the schedule's time zone and in UTC seconds.
fn when(tick: Option<i64>, tz: &str) -> String {
    let Some(t) = tick else {
        return "-".into();
    };
    let Ok(ts) = Timestamp::from_second(t) else {
        return t.to_string();
    };
    let zoned = ts.to_zoned(TimeZone::get(tz).unwrap_or(TimeZone::UTC));
    strtime::format("%Y-%m-%d %H:%M:%S %Z", &zoned).unwrap_or_else(|_| t.to_string())
}

fn print_list(views: &[View]) {
    if views.is_empty() {
        println!("no schedules (add one with `toolq schedule add`)");
        return;
    }
    let rows: Vec<[String; 8]> = views
        .iter()
        .map(|v| {
            let (cron, tz) = match &v.definition {
                Some(d) => (d.cron.clone(), d.tz.clone()),
                None => ("(unreadable)".into(), "UTC".into()),
            };
            [
                safe(&v.name),
                safe(&v.queue),
                safe(&cron),
                if v.paused {
                    "paused".into()
                } else {
                    when(v.next, &tz)
                },
                when(v.last_tick, &tz),
                v.last_id.as_deref().map(safe).unwrap_or_else(|| "-".into()),
                v.last_outcome.clone().unwrap_or_else(|| "-".into()),
                safe(&tz),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["NAME", "QUEUE", "CRON", "NEXT", "LAST", "LAST JOB", "OUTCOME", "TZ"],
            &rows
        )
    );
}

fn print_one(v: &View) {
    let tz = v
        .definition
        .as_ref()
        .map(|d| d.tz.clone())
        .unwrap_or_else(|| "UTC".into());
    println!("name:         {}", safe(&v.name));
    println!("queue:        {}", safe(&v.queue));
    match &v.definition {
        Some(d) => {
            println!("cron:         {} ({})", safe(&d.cron), safe(&d.tz));
            println!(
                "job:          {} {}",
                safe(&d.tool),
                safe(&d.args.to_string())
            );
            println!(
                "misfire:      {} (grace {} s)",
                d.misfire.as_str(),
                d.misfire_grace_s
            );
            for (k, val) in [
                ("max_attempts", d.max_attempts.map(u64::from)),
                ("timeout_ms", d.timeout_ms),
                ("result_ttl_s", d.result_ttl_s),
            ] {
                if let Some(val) = val {
                    println!("{:<14}{val}", format!("{k}:"));
                }
            }
            if let Some(meta) = &d.meta {
                println!("meta:         {}", safe(&meta.to_string()));
            }
        }
        None => println!("definition:   unreadable ({})", safe(&v.record.def)),
    }
    println!(
        "defined by:   {}",
        if v.source == "config" {
            "configuration ([[schedules]])"
        } else {
            "toolq schedule add"
        }
    );
    println!(
        "state:        {}",
        if v.paused { "paused" } else { "active" }
    );
    println!(
        "next run:     {}",
        if v.paused {
            "-".into()
        } else {
            when(v.next, &tz)
        }
    );
    println!("last run:     {}", when(v.last_tick, &tz));
    println!(
        "last job:     {}",
        v.last_id.as_deref().map(safe).unwrap_or_else(|| "-".into())
    );
    println!("last outcome: {}", v.last_outcome.as_deref().unwrap_or("-"));
}

#[cfg(test)]
mod tests {
    use super::when;

    #[test]
    fn ticks_print_in_the_schedule_zone_with_its_abbreviation() {
        // 2027-03-28 01:00 UTC: Berlin's first instant of summer time.
        let t = 1_806_195_600;
        assert_eq!(when(Some(t), "Europe/Berlin"), "2027-03-28 03:00:00 CEST");
        assert_eq!(
            when(Some(t - 1), "Europe/Berlin"),
            "2027-03-28 01:59:59 CET"
        );
        assert_eq!(when(Some(t), "America/New_York"), "2027-03-27 21:00:00 EDT");
        // A zone no longer known prints UTC rather than nothing.
        assert_eq!(when(Some(t), "Europe/Nowhere"), "2027-03-28 01:00:00 UTC");
        assert_eq!(when(None, "UTC"), "-");
    }
}
