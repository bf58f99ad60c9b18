//! `admesh`: the whole mesh in one process (`admesh up`, the default) and
//! the operator CLI.

mod cli;
mod demo;
mod mesh;
mod up;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::run(cli)
}
