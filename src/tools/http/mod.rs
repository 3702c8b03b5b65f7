//! Tools that are HTTP endpoints: `[tools.http.<name>]` in the
//! configuration makes `<name>` a tool whose call sends the job's `args` as
//! the JSON body and whose output is the JSON response (`tool`). What every
//! HTTP-backed tool shares, the weather tool included, is in `exchange`.

pub mod exchange;
mod tool;

pub use tool::{header_value, is_secret_header, HttpTool, HttpToolConfig, HttpToolError};
