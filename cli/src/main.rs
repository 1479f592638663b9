//! `ballast`: the command-line client of ballastd. Parses the command line, runs one command, prints, exits.

mod client;
mod commands;
mod error;
mod files;
mod render;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use ballast_specs::{Cpus, Duration, Memory};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::error::CliError;
use crate::render::Output;

const EXIT_CODES: &str = "\
Exit codes:
  0  success; diff: no changes
  1  the command failed: invalid input, conflict, not found, unauthorized or forbidden,
     a Failed unit under status --wait; diff: there are changes
  2  usage error; status --wait timed out; diff: the input is wrong
  3  ballastd cannot be reached or failed: connection refused, etcd unavailable (503), 5xx
exec exits with the command's own exit code once it ran.";

/// ballast: edit the desired state of container roles and watch ballastd converge the hosts to it.
#[derive(Debug, Parser)]
#[command(name = "ballast", version, after_help = EXIT_CODES)]
struct Cli {
    /// URL of ballastd's API: http:// or https://.
    #[arg(long, env = "BALLAST_SERVER", default_value = "http://127.0.0.1:7373", global = true)]
    server: String,
    /// Bearer token (from ballastd's token file). Other users see it in `ps`: prefer --token-file.
    #[arg(long, env = "BALLAST_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A file holding the bearer token alone; the command line's --token or --token-file wins over the
    /// environment's.
    #[arg(long, env = "BALLAST_TOKEN_FILE", value_name = "PATH", global = true)]
    token_file: Option<PathBuf>,
    /// CA certificates (PEM) that an https:// server's certificate must chain to, instead of the system's roots.
    #[arg(long, env = "BALLAST_CA", value_name = "PATH", global = true)]
    ca: Option<PathBuf>,
    /// Output format: table for people; json and yaml print the API's wire types (a stable format).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store the objects of spec files: all of them or none.
    Apply {
        /// A spec file, or a directory of .yaml/.yml files (not recursive); may be repeated.
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE|DIR")]
        files: Vec<PathBuf>,
        /// Show what would change without storing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show how spec files differ from the stored objects (exit 0: no change, 1: changes, >1: error).
    Diff {
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE|DIR")]
        files: Vec<PathBuf>,
    },
    /// List roles or hosts, or show one.
    Get {
        #[arg(value_enum)]
        kind: KindArg,
        name: Option<String>,
    },
    /// Edit a role's spec in $EDITOR; stored with compare-and-swap on its revision.
    Edit { role: String },
    /// Change one field of a role.
    #[command(subcommand)]
    Set(SetCommand),
    /// Delete a role (its containers are removed from its hosts) or a host.
    Delete {
        #[arg(value_enum)]
        kind: KindArg,
        name: String,
    },
    /// A role's spec history, undo, restart and retry.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Stop changing a role's containers (still observed and reported).
    Pause { role: String },
    /// Let ballastd change a paused role's containers again.
    Resume { role: String },
    /// Per unit (role, host): state, generations, image, limits.
    Status(StatusArgs),
    /// What ballastd would do on each host right now.
    Plan { role: Option<String> },
    /// What ballastd and users did recently.
    Events {
        role: Option<String>,
        /// Keep printing new events.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Print the log of a role's container on each of its hosts (needs a write token).
    Logs {
        role: String,
        /// Only this host's container.
        #[arg(long)]
        host: Option<String>,
        /// Keep printing new lines until the container stops or Ctrl-C.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines of each container.
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
        /// Show when each line was written.
        #[arg(short = 't', long)]
        timestamps: bool,
    },
    /// Run a command in a role's running container and exit with its exit code (needs a write token).
    Exec {
        role: String,
        /// The host whose container runs it (default: the role's first host).
        #[arg(long)]
        host: Option<String>,
        /// The command and its arguments, after `--` (not run through a shell).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SetCommand {
    /// Set a role's image (`ROLE IMAGE`), or with --selector the image of every role whose labels match
    /// (`--selector app=datalake IMAGE`), in one transaction: all of them or none.
    Image {
        /// ROLE IMAGE; with --selector, IMAGE only.
        #[arg(value_name = "ROLE IMAGE", num_args = 1..=2, required = true)]
        args: Vec<String>,
        /// Label selector, key=value[,key=value]: every role whose labels match.
        #[arg(short = 'l', long, value_name = "SELECTOR")]
        selector: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Set a role's CPU and memory limits (applied in place, without restart).
    #[command(group = clap::ArgGroup::new("limits").required(true).multiple(true).args(["cpus", "memory"]))]
    Resources {
        role: String,
        /// CPUs, as docker --cpus (0.25, 1.5).
        #[arg(long, value_parser = Cpus::parse)]
        cpus: Option<Cpus>,
        /// Memory, as docker --memory (512m, 1.75g, 2GiB).
        #[arg(long, value_parser = Memory::parse)]
        memory: Option<Memory>,
    },
}

#[derive(Debug, Subcommand)]
enum RolloutCommand {
    /// The stored revisions of a role's spec.
    History { role: String },
    /// Store an earlier revision's spec as a new generation.
    Undo {
        role: String,
        /// The revision to go back to (default: the newest one that differs from the current spec).
        #[arg(long)]
        to_revision: Option<u64>,
    },
    /// Replace every container of the role.
    Restart { role: String },
    /// Let Failed units of the role try again.
    Retry { role: String },
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[arg(conflicts_with = "selector")]
    role: Option<String>,
    /// Only the roles whose labels match: key=value[,key=value].
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
struct WaitArgs {
    /// Wait until every unit is Converged at its role's generation (exit 0), a unit Failed (exit 1),
    /// or --timeout passed (exit 2).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "10m", value_parser = Duration::parse, value_name = "DUR")]
    timeout: Duration,
}

impl WaitArgs {
    /// The timeout, when waiting.
    fn timeout(&self) -> Option<&Duration> {
        self.wait.then_some(&self.timeout)
    }
}

/// `roles` or `hosts` (singular accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum KindArg {
    #[value(name = "roles", alias = "role")]
    Roles,
    #[value(name = "hosts", alias = "host")]
    Hosts,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    if let Command::Set(SetCommand::Image { args, selector, .. }) = &cli.command {
        let message = match (selector, args.len()) {
            (Some(_), 2) => {
                Some("with --selector, give IMAGE only: the roles are those the selector matches")
            }
            (None, 1) => Some("give ROLE IMAGE, or --selector SELECTOR IMAGE"),
            _ => None,
        };
        if let Some(message) = message {
            Cli::command().error(clap::error::ErrorKind::WrongNumberOfValues, message).exit();
        }
    }
    match token::choose(&cli, &matches) {
        Ok(token) => cli.token = token,
        Err(err) => {
            report(&err);
            return ExitCode::from(err.exit_code());
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(error::exit::SERVER);
        }
    };
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            err.exit_code()
        }
    };
    ExitCode::from(code)
}

/// Prints a failure on stderr: problems one a line, then `error: ...`.
fn report(err: &CliError) {
    if let CliError::Invalid { problems, .. } = err {
        for problem in problems {
            eprintln!("{problem}");
        }
    }
    eprintln!("error: {err}");
}
