//! `toolq serve`: the gateway until SIGTERM/SIGINT.

use crate::config::Config;
use crate::gateway::{self, GatewayError, Plan};

use super::{CliError, Exit};

/// Flags of `toolq serve` (they override `[serve]`).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(after_help = "Examples:
  toolq serve --addr 0.0.0.0:8080                  # with serve.jwt_secret_file set
  TOOLQ_SERVE__JWT_SECRET_FILE=/run/secrets/jwt toolq serve
  toolq serve --no-auth                            # loopback only: every request may do everything")]
pub struct ServeArgs {
    /// Address of the HTTP API, /mcp and /ui [env: TOOLQ_SERVE__ADDR] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Serve without authentication (refused unless the address is loopback)
    #[arg(long)]
    pub no_auth: bool,
}

pub async fn run(
    mut config: Config,
    args: ServeArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Exit, CliError> {
    if let Some(addr) = args.addr {
        config.serve.addr = addr;
    }
    if args.no_auth && config.profile == Some(crate::config::Profile::Production) {
        return Err(CliError::BadInput(
            "--no-auth is refused with TOOLQ_PROFILE=production".into(),
        ));
    }
    config.serve.no_auth |= args.no_auth;
    let plan = Plan::from_config(&config.serve).map_err(|e| CliError::BadInput(e.to_string()))?;
    gateway::run(&config, plan, shutdown, |_| {})
        .await
        .map_err(|e| match e {
            GatewayError::Producer(p) => p.into(),
            GatewayError::Bind { .. } | GatewayError::Addr(_) => CliError::BadInput(e.to_string()),
            e => CliError::Failed(e.to_string()),
        })?;
    Ok(Exit::Success)
}
