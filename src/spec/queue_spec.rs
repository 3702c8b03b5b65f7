//! One `--queue` value, as configuration and the command line spell it.

/// One `--queue` value: `name` or `name=weight`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub weight: Option<u32>,
}

impl QueueSpec {
    pub fn parse(spec: &str) -> Result<QueueSpec, String> {
        let (name, weight) = match spec.split_once('=') {
            Some((n, w)) => {
                let w: u32 = w
                    .trim()
                    .parse()
                    .map_err(|_| format!("queue {spec:?}: weight must be a whole number"))?;
                if !(1..=1000).contains(&w) {
                    return Err(format!("queue {spec:?}: weight must be 1..=1000"));
                }
                (n.trim(), Some(w))
            }
            None => (spec.trim(), None),
        };
        if name.is_empty() || name.len() > 100 {
            return Err(format!("queue name {name:?} must be 1 to 100 characters"));
        }
        if name
            .chars()
            .any(|c| c == '{' || c == '}' || c == '#' || c.is_whitespace() || c.is_control())
        {
            // `#` separates a queue from its shard number in keys.
            return Err(format!(
                "queue name {name:?} must not contain braces or spaces, nor `#`"
            ));
        }
        Ok(QueueSpec {
            name: name.to_owned(),
            weight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_weights() {
        assert_eq!(
            QueueSpec::parse("high=5").unwrap(),
            QueueSpec {
                name: "high".into(),
                weight: Some(5)
            }
        );
        assert_eq!(QueueSpec::parse("low").unwrap().weight, None);
        assert!(QueueSpec::parse("a=0").is_err());
        assert!(QueueSpec::parse("a=x").is_err());
        assert!(QueueSpec::parse("").is_err());
        assert!(QueueSpec::parse("a{b}").is_err());
        assert!(QueueSpec::parse("a#1").is_err());
    }
}
