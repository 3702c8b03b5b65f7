//! A running job's latest progress report, as stored at
//! `toolq:{Q}:progress:<id>` and shown by `toolq job show`, the gateway's
//! `GET /jobs/{id}` and the console.

use serde::{Deserialize, Serialize};

/// How far a job's tool says it has come.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Progress {
    /// From 0 to 1.
    pub fraction: f64,
    /// What the tool is doing (at most 200 characters).
    pub message: String,
    /// The attempt that reported it (0 on the first): after a retry, the
    /// previous attempt's last report stays until the new one reports.
    pub attempt: u32,
    /// When it was stored, unix ms (Redis clock).
    pub updated_at: u64,
}

impl Progress {
    /// The stored document; `None` when it does not parse (never an error:
    /// progress is only ever shown).
    pub fn parse(text: &str) -> Option<Progress> {
        serde_json::from_str(text).ok()
    }

    /// `40% resizing` as the command line and the console show it.
    pub fn line(&self) -> String {
        let percent = (self.fraction * 100.0).floor();
        match self.message.is_empty() {
            true => format!("{percent}%"),
            false => format!("{percent}% {}", self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stored_document() {
        let p = Progress::parse(
            r#"{"fraction":0.4,"message":"step 4 of 10","attempt":1,"updated_at":1700000000000}"#,
        )
        .unwrap();
        assert_eq!(p.attempt, 1);
        assert_eq!(p.line(), "40% step 4 of 10");
        assert!(Progress::parse("{").is_none());
    }
}
