//! toolq: a background job worker backed by Redis.
pub mod config;
pub mod health;
pub mod job;
pub mod queue;
pub mod tools;
pub mod worker;
