//! `agent-sensor`: parses the command line and reports errors as one clear line.
use std::process::ExitCode;

use agent_sensor::{
    cli::{self, Cli, Command},
    commands,
};
use clap::Parser as _;

fn main() -> ExitCode {
    agent_sensor::telemetry::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => agent_sensor::run::run(args).map(|()| ExitCode::SUCCESS),
        Command::Probe(args) => commands::probe(&args),
        Command::CheckConfig { file } => commands::check_config(&file),
        Command::Register(args) => commands::register(&args),
        Command::Annotate(args) => commands::annotate(&args),
        Command::Except(args) => commands::except(&args),
        Command::Verify {
            paths,
            json,
            key,
            allow_open_end,
        } => commands::verify(&paths, key.as_deref(), json, allow_open_end),
        Command::Report(args) => commands::report(&args),
        Command::Keygen { dir } => commands::keygen(&dir),
        Command::Schema => {
            print!("{}", agent_sensor::record::schema::rendered());
            Ok(ExitCode::SUCCESS)
        }
        Command::Identities(cli::IdentitiesCommand::Check { path }) => {
            commands::check_identities(&path)
        }
        Command::Rules(cli::RulesCommand::Check { paths }) => {
            agent_sensor::rules::workflow::check(&paths)
        }
        Command::Rules(cli::RulesCommand::Test { rules, events }) => {
            agent_sensor::rules::workflow::test(&rules, &events)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agent-sensor: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
