//! `apply` and `diff`: spec files against the stored objects.

use std::path::PathBuf;

use ballast_specs::wire::{ApplyOutcome, ApplyRequest, ApplyResponse, RoleView};
use ballast_specs::{HostSpec, Object, RoleSpec, API_VERSION};
use serde::Serialize;
use similar::TextDiff;

use super::{host_path, role_path, Context};
use crate::error::{exit, CliError, Result};
use crate::files::{self, SpecFiles};
use crate::render::{self, print_data};

/// Parses every file (any problem: all printed, nothing sent), then one `POST /api/v1/apply`.
pub async fn apply(cx: &Context, paths: &[PathBuf], dry_run: bool) -> Result<()> {
    let specs = files::read(paths, "nothing was applied")?;
    let request = ApplyRequest { objects: specs.objects.clone(), dry_run };
    let response: ApplyResponse = match cx.client.post("/api/v1/apply", &request).await {
        Ok(response) => response,
        Err(err) => return Err(located(&specs, err.into())),
    };
    if print_data(cx.output, &response)? {
        return Ok(());
    }
    let suffix = if dry_run { " (dry run)" } else { "" };
    for result in &response.results {
        let outcome = match result.outcome {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        };
        println!("{}/{} {outcome}{suffix}", result.kind.as_str().to_lowercase(), result.name);
    }
    Ok(())
}

/// Prints a unified diff per object that differs from the stored one. Exit 0: none differs, 1: some do;
/// errors exit 2 (input) or 3 (server), never 1.
pub async fn diff(cx: &Context, paths: &[PathBuf]) -> Result<u8> {
    match diff_files(cx, paths).await {
        Ok(changed) => Ok(if changed { exit::FAILED } else { exit::OK }),
        Err(CliError::Failed(message)) => {
            eprintln!("error: {message}");
            Ok(exit::USAGE)
        }
        Err(err @ CliError::Invalid { .. }) => {
            crate::report(&err);
            Ok(exit::USAGE)
        }
        Err(err) => Err(err),
    }
}

async fn diff_files(cx: &Context, paths: &[PathBuf]) -> Result<bool> {
    let specs = files::read(paths, "nothing was compared")?;
    let mut changed = false;
    for (object, origin) in specs.objects.iter().zip(&specs.origins) {
        let stored = stored_object(cx, object).await?;
        let same = stored
            .as_ref()
            .is_some_and(|s| s.same_spec(object) && s.metadata().labels == object.metadata().labels);
        if same {
            continue;
        }
        changed = true;
        let id = format!("{}/{}", object.kind().as_str().to_lowercase(), object.name());
        let old = match &stored {
            Some(stored) => render::yaml(&Comparable::of(stored))?,
            None => String::new(),
        };
        let new = render::yaml(&Comparable::of(object))?;
        let old_name = if stored.is_some() { format!("{id} (stored)") } else { "/dev/null".to_string() };
        let new_name = format!("{id} ({})", origin.file);
        let text = TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(3)
            .header(&old_name, &new_name)
            .to_string();
        println!("diff {id}");
        print!("{text}");
    }
    Ok(changed)
}

/// The stored object of the same kind and name, if any.
async fn stored_object(cx: &Context, object: &Object) -> Result<Option<Object>> {
    let found = match object {
        Object::Host(host) => cx.client.get_optional::<Object>(&host_path(&host.metadata.name)).await?,
        Object::Role(role) => cx
            .client
            .get_optional::<RoleView>(&role_path(&role.metadata.name))
            .await?
            .map(|view| Object::Role(view.role)),
    };
    Ok(found)
}

/// What `diff` compares: kind, name, labels and spec; never the store's bookkeeping.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Comparable<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: ComparableMetadata<'a>,
    spec: SpecRef<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum SpecRef<'a> {
    Host(&'a HostSpec),
    Role(&'a RoleSpec),
}

#[derive(Serialize)]
struct ComparableMetadata<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    labels: &'a std::collections::BTreeMap<String, String>,
}

impl<'a> Comparable<'a> {
    fn of(object: &'a Object) -> Comparable<'a> {
        let spec = match object {
            Object::Host(host) => SpecRef::Host(&host.spec),
            Object::Role(role) => SpecRef::Role(&role.spec),
        };
        Comparable {
            api_version: API_VERSION,
            kind: object.kind().as_str(),
            metadata: ComparableMetadata { name: object.name(), labels: &object.metadata().labels },
            spec,
        }
    }
}

/// Server problems of an apply, put back at their files and documents.
fn located(specs: &SpecFiles, err: CliError) -> CliError {
    match err {
        CliError::Invalid { problems, summary } => {
            let problems = problems.into_iter().map(|p| specs.locate(p)).collect();
            CliError::Invalid {
                problems,
                summary: summary.replace("nothing was stored", "nothing was applied"),
            }
        }
        other => other,
    }
}
