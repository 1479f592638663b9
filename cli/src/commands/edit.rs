//! `edit ROLE`: the role as YAML in `$EDITOR`, parsed and validated, stored with compare-and-swap.

use std::path::Path;
use std::process::Command;

use ballast_specs::wire::RoleView;
use ballast_specs::{parse_documents, Object, Problem};
use reqwest::StatusCode;

use super::{fetch_role, role_path, Context};
use crate::client::ClientError;
use crate::error::{CliError, Result};
use crate::render::{print_data, yaml};

pub async fn edit(cx: &Context, name: &str) -> Result<()> {
    let view = fetch_role(cx, name).await?;
    let revision = view.role.metadata.revision;
    let mut shown = view.role.clone();
    shown.metadata.generation = 0;
    shown.metadata.revision = 0;
    shown.metadata.creation_timestamp = None;
    let original = Object::Role(shown);
    let text = format!(
        "# Edit role {name:?} (generation {}). Lines starting with '#' are ignored.\n\
         # Save and quit to store it; quit without changes to cancel.\n{}",
        view.role.metadata.generation,
        yaml(&original)?
    );

    let file = tempfile::Builder::new()
        .prefix(&format!("ballast-edit-{name}-"))
        .suffix(".yaml")
        .tempfile()
        .map_err(|err| CliError::Failed(format!("cannot create a temporary file: {err}")))?;
    let path = file.into_temp_path();
    std::fs::write(&path, &text)
        .map_err(|err| CliError::Failed(format!("cannot write {}: {err}", path.display())))?;
    run_editor(&path)?;
    let edited = std::fs::read_to_string(&path)
        .map_err(|err| CliError::Failed(format!("cannot read {}: {err}", path.display())))?;
    if edited == text {
        println!("edit cancelled, no changes made");
        return Ok(());
    }

    let shown_path = path.display().to_string();
    let role = match parse_one(&edited, &shown_path, name) {
        Ok(role) => role,
        Err(problems) => {
            let kept = keep(path)?;
            return Err(CliError::invalid(
                problems,
                &format!("nothing was changed; your edit is kept in {kept}"),
            ));
        }
    };
    if role.same_spec(&original) && role.metadata().labels == original.metadata().labels {
        println!("edit cancelled, no changes made");
        return Ok(());
    }
    let mut role = role;
    role.metadata_mut().revision = revision;
    match cx.client.put::<_, RoleView>(&role_path(name), &role).await {
        Ok(stored) => {
            if !print_data(cx.output, &stored)? {
                println!("role/{name} edited (generation {})", stored.role.metadata.generation);
            }
            Ok(())
        }
        Err(ClientError::Api { status: StatusCode::CONFLICT, .. }) => {
            let kept = keep(path)?;
            Err(CliError::Failed(format!(
                "conflict: role {name:?} was changed by someone else while you edited it; nothing was changed; \
                 your edit is kept in {kept}: run `ballast edit {name}` again"
            )))
        }
        Err(ClientError::Api { status: StatusCode::UNPROCESSABLE_ENTITY, error }) => {
            let kept = keep(path)?;
            let problems =
                error.problems.into_iter().map(|p| p.located(Some(&shown_path), Some(1))).collect();
            Err(CliError::invalid(problems, &format!("nothing was changed; your edit is kept in {kept}")))
        }
        Err(err) => {
            let kept = keep(path)?;
            let err: CliError = err.into();
            Err(match err {
                CliError::Server(message) => {
                    CliError::Server(format!("{message}; your edit is kept in {kept}"))
                }
                CliError::Failed(message) => {
                    CliError::Failed(format!("{message}; your edit is kept in {kept}"))
                }
                other => other,
            })
        }
    }
}

/// Runs `$EDITOR` (default `vi`; may carry arguments, e.g. `code -w`) on `path` and waits for it.
fn run_editor(path: &Path) -> Result<()> {
    let editor =
        std::env::var("EDITOR").ok().filter(|e| !e.trim().is_empty()).unwrap_or_else(|| "vi".to_string());
    let mut words = editor.split_whitespace();
    let program = words.next().unwrap_or("vi");
    let status =
        Command::new(program).args(words).arg(path).status().map_err(|err| {
            CliError::Failed(format!("cannot run the editor {editor:?}: {err} (set EDITOR)"))
        })?;
    if !status.success() {
        return Err(CliError::Failed(format!(
            "the editor {editor:?} failed ({status}); nothing was changed"
        )));
    }
    Ok(())
}

/// The edited text as exactly one Role named `name`, or every problem.
fn parse_one(text: &str, file: &str, name: &str) -> Result<Object, Vec<Problem>> {
    let mut objects = parse_documents(text, Some(file))?;
    let at = |path: &str, message: String| vec![Problem::new(path, message).located(Some(file), Some(1))];
    if objects.len() != 1 {
        return Err(at("", format!("expected exactly one Role, found {} objects", objects.len())));
    }
    let object = objects.remove(0);
    if !matches!(object, Object::Role(_)) {
        return Err(at("kind", "must stay Role".to_string()));
    }
    if object.name() != name {
        return Err(at("metadata.name", format!("cannot be changed (was {name:?}, is {:?})", object.name())));
    }
    Ok(object)
}

/// Keeps the temporary file and returns its path for the message.
fn keep(path: tempfile::TempPath) -> Result<String> {
    let shown = path.display().to_string();
    path.keep().map_err(|err| CliError::Failed(format!("cannot keep {shown}: {err}")))?;
    Ok(shown)
}
