//! `toolq result ID`: a job's result JSON.

use crate::config::Config;
use crate::producer::Producer;

use super::{CliError, Exit};

pub async fn run(config: &Config, queue: &str, id: &str) -> Result<Exit, CliError> {
    let producer = Producer::from_config(config)?;
    producer.broker().check_reachable().await?;
    match producer.result_text(queue, id).await? {
        Some(text) => {
            println!("{text}");
            Ok(Exit::Success)
        }
        None => Err(CliError::Failed(format!(
            "no result for job {id} in queue {queue} (unknown id, not finished yet, or expired)"
        ))),
    }
}
