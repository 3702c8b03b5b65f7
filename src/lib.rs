//! toolq: a background job worker backed by Redis.
pub mod tools;
