//! The `obleth` binary: the gateway (`serve`), a self-contained demo (`demo`), the
//! bundled mock backend (`mock`), and a CLI for the admin API.
//!
//! This is the only crate that picks concrete implementations for the seams defined in
//! `obleth-core` and `obleth-store`; see `server.rs`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use obleth::{client, config, ops, server, telemetry};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// obleth: the fairshare-first AI gateway.
#[derive(Debug, Parser)]
#[command(name = "obleth", version, about)]
struct Cli {
    /// Configuration file (TOML). Environment variables OBLETH_* override it.
    #[arg(long, short, global = true, env = "OBLETH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway against the configured upstream.
    Serve,
    /// Run the gateway with the embedded store and the bundled mock backend, create a
    /// demo tenant and key, and print a ready-to-paste request.
    Demo(server::DemoArgs),
    /// Run the bundled mock OpenAI-compatible backend.
    Mock(server::MockArgs),
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
    /// Apply the control-plane migrations and exit (a deployment's schema step; pods
    /// then run with database.migrate = false).
    Migrate(ops::MigrateArgs),
    /// Probe a pod's health endpoint and exit 0 if it answers 200 (a container's
    /// health check).
    Health(ops::HealthArgs),
    /// Manage tenants through the admin API.
    Tenants {
        #[command(flatten)]
        conn: client::AdminConn,
        #[command(subcommand)]
        cmd: client::TenantCmd,
    },
    /// Manage API keys through the admin API.
    Keys {
        #[command(flatten)]
        conn: client::AdminConn,
        #[command(subcommand)]
        cmd: client::KeyCmd,
    },
    /// Manage fairshare groups through the admin API.
    Groups {
        #[command(flatten)]
        conn: client::AdminConn,
        #[command(subcommand)]
        cmd: client::GroupCmd,
    },
    /// Show the scheduler's state: slots, queues, shares.
    Scheduler {
        #[command(flatten)]
        conn: client::AdminConn,
    },
    /// Query the usage ledger: totals, time series, recent rows, its status.
    Usage {
        #[command(flatten)]
        conn: client::AdminConn,
        #[command(subcommand)]
        cmd: client::UsageCmd,
    },
    /// Manage the model registry through the admin API.
    Models {
        #[command(flatten)]
        conn: client::AdminConn,
        #[command(subcommand)]
        cmd: client::ModelCmd,
    },
    /// Manage the MCP gateway through the admin API: upstream servers, grants, and the
    /// review and approval of changed tool definitions.
    Mcp {
        #[command(flatten)]
        conn: client::AdminConn,
        #[command(subcommand)]
        cmd: client::McpCmd,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve => {
                let config = load_config(cli.config.as_deref())?;
                telemetry::init_logging(&config.log_level);
                server::serve(config).await
            }
            Command::Demo(args) => {
                let config = load_config(cli.config.as_deref())?;
                telemetry::init_logging(&config.log_level);
                server::demo(config, args).await
            }
            Command::Mock(args) => {
                telemetry::init_logging("info");
                server::mock(args).await
            }
            Command::CheckConfig => {
                let config = load_config(cli.config.as_deref())?;
                println!("{}", serde_json::to_string_pretty(&config.redacted())?);
                Ok(())
            }
            Command::Migrate(args) => {
                let config = load_config(cli.config.as_deref())?;
                ops::migrate(&config, &args).await
            }
            Command::Health(args) => ops::health(&args).await,
            Command::Tenants { conn, cmd } => client::tenants(&conn, cmd).await,
            Command::Keys { conn, cmd } => client::keys(&conn, cmd).await,
            Command::Models { conn, cmd } => client::models(&conn, cmd).await,
            Command::Mcp { conn, cmd } => client::mcp(&conn, cmd).await,
            Command::Groups { conn, cmd } => client::groups(&conn, cmd).await,
            Command::Scheduler { conn } => client::scheduler(&conn).await,
            Command::Usage { conn, cmd } => client::usage(&conn, cmd).await,
        }
    })
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<config::Config> {
    Ok(config::Config::load(path, std::env::vars())?)
}
