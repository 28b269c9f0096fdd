//! The command line: `lifeline run|check|version [--config PATH]`.
//!
//! The shape is a contract (DESIGN.md, "Configuration contract"): `run` starts the edge,
//! `check` validates the configuration and every dialplan without binding anything, `version`
//! prints the version. Usage errors exit 64 (`EX_USAGE`), as do invalid configurations.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::{App, Binds};
use crate::config::Config;

/// sysexits(3) `EX_USAGE`: bad arguments or bad configuration.
pub const EX_USAGE: u8 = 64;
/// sysexits(3) `EX_SOFTWARE`: an internal error.
pub const EX_SOFTWARE: u8 = 70;

const USAGE: &str = "\
usage: lifeline <command> [--config PATH]

commands:
  run       run the edge (without a config file: the embedded defaults in demo mode,
            with a simulated carrier and demo agents on loopback)
  check     validate the configuration and every dialplan file, bind nothing
  version   print the version

options:
  -c, --config PATH   configuration file (default: ./lifeline.toml if present)
  -h, --help          print this help
";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run { config: Option<PathBuf> },
    Check { config: Option<PathBuf> },
    Version,
    Help,
}

/// Why a command line was refused; printed with the usage text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let mut command: Option<&str> = None;
    let mut config: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            return Err(UsageError(format!("argument is not UTF-8: {arg:?}")));
        };
        match text {
            "-h" | "--help" | "help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => match args.next() {
                Some(path) => config = Some(PathBuf::from(path)),
                None => return Err(UsageError(format!("{text} needs a PATH"))),
            },
            _ if text.starts_with("--config=") => {
                config = Some(PathBuf::from(&text["--config=".len()..]));
            }
            "run" | "check" | "version" if command.is_none() => {
                command = Some(match text {
                    "run" => "run",
                    "check" => "check",
                    _ => "version",
                })
            }
            _ => return Err(UsageError(format!("unexpected argument '{text}'"))),
        }
    }
    match command {
        Some("run") => Ok(Command::Run { config }),
        Some("check") => Ok(Command::Check { config }),
        Some(_) if config.is_some() => Err(UsageError("version takes no --config".into())),
        Some(_) => Ok(Command::Version),
        None => Err(UsageError("a command is required".into())),
    }
}

/// The version line printed by `lifeline version`.
pub fn version_line() -> String {
    format!("lifeline {}", env!("CARGO_PKG_VERSION"))
}

/// Runs the command line and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    match parse(args) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("{}", version_line());
            ExitCode::SUCCESS
        }
        Ok(Command::Check { config }) => match load(config) {
            Ok(_) => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("{message}");
                ExitCode::from(EX_USAGE)
            }
        },
        Ok(Command::Run { config }) => match load(config) {
            Ok(config) => run(config),
            Err(message) => {
                eprintln!("{message}");
                ExitCode::from(EX_USAGE)
            }
        },
        Err(e) => {
            eprintln!("lifeline: {e}\n\n{USAGE}");
            ExitCode::from(EX_USAGE)
        }
    }
}

/// Loads the configuration the way `run` and `check` both do: `--config PATH`, else
/// `./lifeline.toml` when present, else the embedded defaults. The files it names (dialplans,
/// TLS certificate and key) are read too, so `check` catches what `run` would refuse.
fn load(path: Option<PathBuf>) -> Result<Config, String> {
    let default = PathBuf::from("lifeline.toml");
    let config = match path.or_else(|| default.exists().then_some(default)) {
        Some(p) => Config::load(&p).map_err(|e| e.to_string())?,
        None => Config::embedded(),
    };
    let plans = config.resolve(&config.dialplan.dir);
    match crate::routing::Dialplan::load(&plans) {
        Ok(plan) => {
            for w in crate::emergency::warnings(&plan) {
                eprintln!("warning: {}: {w}", plans.display());
            }
            // TLS toward a trunk sends from a `tls:` listener (its Via and Record-Route).
            let tls_listener = config
                .sip
                .listen
                .iter()
                .any(|l| l.transport == crate::config::ListenTransport::Tls);
            for t in plan.trunks.iter().filter(|t| t.uses_tls() && !tls_listener) {
                eprintln!(
                    "warning: {}: trunk '{}' uses TLS but [sip] listen has no tls: listener: \
                     calls to it fail",
                    plans.display(),
                    t.name
                );
            }
        }
        Err(errors) => {
            return Err(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
        }
    }
    if let Some(seed) = &config.agents.seed {
        let path = config.resolve(seed);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}:0: cannot read: {e}", path.display()))?;
        match crate::store::seed::parse(&path, &text, &config.sip.domain) {
            Ok(parsed) => {
                for w in &parsed.warnings {
                    eprintln!("warning: {w}");
                }
            }
            Err(errors) => return Err(errors.to_string()),
        }
    }
    if let Some(tls) = &config.tls {
        let file = config
            .source
            .as_ref()
            .map_or("<embedded defaults>".into(), |p| p.display().to_string());
        crate::transport::tls::server_config(&config.resolve(&tls.cert), &config.resolve(&tls.key))
            .map_err(|e| format!("{file}: [tls]: {e}"))?;
    }
    Ok(config)
}

fn run(config: Config) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lifeline: cannot start the runtime: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    runtime.block_on(async move {
        let mut binds = match Binds::bind(&config).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot bind");
                return ExitCode::from(EX_SOFTWARE);
            }
        };
        // Demo mode: only when no configuration file was found (crate::demo).
        if config.source.is_none() {
            let demo = crate::demo::Demo::bind().await;
            crate::demo::announce(&config, &demo);
            binds.demo = Some(demo);
        }
        let source =
            config.source.as_ref().map_or("embedded defaults".into(), |p| p.display().to_string());
        let app = match App::build(config, binds) {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::from(EX_USAGE);
            }
        };
        tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %source, "lifeline started");
        app.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// Resolves on SIGINT or SIGTERM (systemd's stop).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn commands_and_config() {
        assert_eq!(parse(args(&["version"])), Ok(Command::Version));
        assert_eq!(parse(args(&["run"])), Ok(Command::Run { config: None }));
        assert_eq!(
            parse(args(&["check", "--config", "x.toml"])),
            Ok(Command::Check { config: Some("x.toml".into()) })
        );
        assert_eq!(
            parse(args(&["--config=y.toml", "run"])),
            Ok(Command::Run { config: Some("y.toml".into()) })
        );
    }

    #[test]
    fn usage_errors() {
        assert!(parse(args(&[])).is_err());
        assert!(parse(args(&["run", "--config"])).is_err());
        assert!(parse(args(&["run", "check"])).is_err());
        assert!(parse(args(&["frobnicate"])).is_err());
        assert!(parse(args(&["version", "--config", "a"])).is_err());
    }
}
