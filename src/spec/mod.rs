//! Small values that configuration names and the rest of toolq acts on: a
//! queue spec, the side port's address, a Redis URL fit to show, whether an
//! address is loopback, text from outside made fit for a terminal. A leaf
//! module: it imports nothing of toolq, so `config` and the modules that use
//! these values can both depend on it without depending on each other.

mod host;
mod http_addr;
mod queue_spec;
mod redis_url;
mod sentinel_url;
mod text;

pub use host::{is_loopback_addr, is_loopback_host};
pub use http_addr::{HttpAddr, InvalidAddr, DEFAULT_HTTP_ADDR};
pub use queue_spec::QueueSpec;
pub use redis_url::{mask_url, percent_encode, with_password, UrlParts};
pub use sentinel_url::{SentinelUrl, DEFAULT_SENTINEL_PORT};
pub use text::escape_controls;
