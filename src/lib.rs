//! toolq: a background job worker backed by Redis.
pub mod health;
pub mod tools;
