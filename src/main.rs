//! `lifeline`: the command line. Thin on purpose: it parses arguments, then hands over to the
//! library (`lifeline::cli`). Exit codes follow sysexits(3): 64 for a usage or config error.

use std::process::ExitCode;

fn main() -> ExitCode {
    lifeline::cli::main(std::env::args_os().skip(1))
}
