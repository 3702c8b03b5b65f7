//! Helpers for the observability tests (`mod obs_support;`): a parser for
//! the Prometheus text format, and a real Prometheus server to query.
#![allow(dead_code)]

pub mod prometheus;
pub mod text;
