//! Test doubles shared by the integration tests (`mod support;`).

pub mod fake_weather;
