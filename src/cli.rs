//! The command line: `lifeline run|check|version [--config PATH]`.
//!
//! The shape is a contract (DESIGN.md, "Configuration contract"): `run` starts the edge,
//! `check` validates the configuration and every dialplan without binding anything, `version`
//! prints the version. Usage errors exit 64 (`EX_USAGE`), as do invalid configurations.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// sysexits(3) `EX_USAGE`: bad arguments or bad configuration.
pub const EX_USAGE: u8 = 64;
/// sysexits(3) `EX_SOFTWARE`: an internal error.
pub const EX_SOFTWARE: u8 = 70;

const USAGE: &str = "\
usage: lifeline <command> [--config PATH]

commands:
  run       run the edge (embedded development defaults when no config is found)
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
        Ok(Command::Run { .. } | Command::Check { .. }) => {
            eprintln!(
                "lifeline: the edge service is not built yet (see issue 5); only `version` works"
            );
            ExitCode::from(EX_SOFTWARE)
        }
        Err(e) => {
            eprintln!("lifeline: {e}\n\n{USAGE}");
            ExitCode::from(EX_USAGE)
        }
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
            Ok(Command::Check {
                config: Some("x.toml".into())
            })
        );
        assert_eq!(
            parse(args(&["--config=y.toml", "run"])),
            Ok(Command::Run {
                config: Some("y.toml".into())
            })
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
