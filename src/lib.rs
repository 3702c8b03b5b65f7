//! toolq: a background job worker backed by Redis.
pub mod health;
pub mod job;
pub mod queue;
pub mod tools;
