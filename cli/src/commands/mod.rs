//! The commands of `ballast`, one module per group; [`run`] dispatches the parsed command line.

mod apply;
mod containers;
mod edit;
mod get;
mod observe;
mod rollout;
mod set;

use ballast_specs::wire::RoleView;
use ballast_specs::{Problem, Selector};

use crate::client::{encode, Client};
use crate::error::{exit, CliError, Result};
use crate::render::Output;
use crate::{Cli, Command, KindArg, RolloutCommand, SetCommand};

/// What every command needs.
pub struct Context {
    pub client: Client,
    pub output: Output,
}

/// Runs the command; the exit code when it did not fail.
pub async fn run(cli: Cli) -> Result<u8> {
    let cx = Context { client: Client::new(&cli.server, cli.token, cli.ca.as_deref())?, output: cli.output };
    match cli.command {
        Command::Apply { files, dry_run } => apply::apply(&cx, &files, dry_run).await?,
        Command::Diff { files } => return apply::diff(&cx, &files).await,
        Command::Get { kind: KindArg::Roles, name } => get::roles(&cx, name.as_deref()).await?,
        Command::Get { kind: KindArg::Hosts, name } => get::hosts(&cx, name.as_deref()).await?,
        Command::Edit { role } => edit::edit(&cx, &role).await?,
        Command::Set(SetCommand::Image { mut args, selector, wait }) => {
            let image = args.pop().unwrap_or_default();
            match (selector, args.pop()) {
                (Some(selector), _) => set::image_by_selector(&cx, &selector, image, wait.timeout()).await?,
                (None, Some(role)) => set::image(&cx, &role, image, wait.timeout()).await?,
                // Refused by `main` before it gets here.
                (None, None) => return Err(CliError::Failed("give ROLE IMAGE".to_string())),
            }
        }
        Command::Set(SetCommand::Resources { role, cpus, memory }) => {
            set::resources(&cx, &role, cpus, memory).await?
        }
        Command::Delete { kind, name } => get::delete(&cx, kind, &name).await?,
        Command::Rollout(RolloutCommand::History { role }) => rollout::history(&cx, &role).await?,
        Command::Rollout(RolloutCommand::Undo { role, to_revision }) => {
            rollout::undo(&cx, &role, to_revision).await?
        }
        Command::Rollout(RolloutCommand::Restart { role }) => {
            rollout::control(&cx, &role, rollout::Control::Restart).await?
        }
        Command::Rollout(RolloutCommand::Retry { role }) => {
            rollout::control(&cx, &role, rollout::Control::Retry).await?
        }
        Command::Pause { role } => rollout::control(&cx, &role, rollout::Control::Pause).await?,
        Command::Resume { role } => rollout::control(&cx, &role, rollout::Control::Resume).await?,
        Command::Status(args) => {
            let selection = match (args.role, args.selector) {
                (Some(role), _) => Selection::Role(role),
                (None, Some(selector)) => Selection::Labels(parse_selector(&selector)?),
                (None, None) => Selection::All,
            };
            observe::status(&cx, &selection, args.wait.timeout()).await?
        }
        Command::Plan { role } => observe::plan(&cx, role.as_deref()).await?,
        Command::Events { role, follow } => observe::events(&cx, role.as_deref(), follow).await?,
        Command::Logs { role, host, follow, tail, timestamps } => {
            let request = containers::LogsRequest { host, follow, tail, timestamps };
            return containers::logs(&cx, &role, &request).await;
        }
        Command::Exec { role, host, command } => return containers::exec(&cx, &role, host, command).await,
    }
    Ok(exit::OK)
}

/// Which roles a command shows or waits for.
pub enum Selection {
    All,
    Role(String),
    /// Those whose labels match (at least one must).
    Labels(Selector),
    /// These (that a command just changed).
    Roles(Vec<String>),
}

/// A `--selector`, or the problem with it.
pub fn parse_selector(text: &str) -> Result<Selector> {
    Selector::parse(text)
        .map_err(|message| CliError::invalid(vec![Problem::new("--selector", message)], "nothing was done"))
}

/// `GET /api/v1/roles/{name}`, with a clear message when it does not exist.
pub async fn fetch_role(cx: &Context, name: &str) -> Result<RoleView> {
    cx.client
        .get_optional(&role_path(name))
        .await?
        .ok_or_else(|| CliError::Failed(format!("role {name:?} not found")))
}

pub fn role_path(name: &str) -> String {
    format!("/api/v1/roles/{}", encode(name))
}

pub fn host_path(name: &str) -> String {
    format!("/api/v1/hosts/{}", encode(name))
}

/// `?role=R` or nothing.
pub fn role_query(role: Option<&str>) -> String {
    role.map(|r| format!("?role={}", encode(r))).unwrap_or_default()
}
