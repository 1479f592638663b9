//! `set image` and `set resources`: read the role, change one field, write it back with compare-and-swap;
//! `set image --selector`: the image of every matching role, in one transaction on ballastd's side.

use ballast_specs::wire::{ApplyOutcome, ApplyResponse, RoleView, SetImageRequest};
use ballast_specs::{check_image, validate_object, Cpus, Duration, Memory, Object, Problem, RoleSpec};
use reqwest::StatusCode;

use super::{fetch_role, observe, parse_selector, role_path, Context, Selection};
use crate::client::ClientError;
use crate::error::{CliError, Result};
use crate::render::print_data;

/// How often a change is tried when someone else changed the role in between.
const ATTEMPTS: usize = 3;

/// Sets one role's image; with `wait`, then waits for the role as `status --wait` does.
pub async fn image(cx: &Context, role: &str, image: String, wait: Option<&Duration>) -> Result<()> {
    change(cx, role, "image", |spec| spec.image = image.clone()).await?;
    match wait {
        Some(timeout) => observe::status(cx, &Selection::Role(role.to_string()), Some(timeout)).await,
        None => Ok(()),
    }
}

/// Sets the image of every role whose labels match `selector`, in one transaction: all of them or none. With
/// `wait`, then waits for every one of them as `status --wait` does.
pub async fn image_by_selector(
    cx: &Context,
    selector: &str,
    image: String,
    wait: Option<&Duration>,
) -> Result<()> {
    let selector = parse_selector(selector)?;
    if let Err(message) = check_image(&image) {
        return Err(CliError::invalid(vec![Problem::new("IMAGE", message)], "nothing was changed"));
    }
    let request = SetImageRequest { selector: selector.to_string(), image };
    let response: ApplyResponse = cx.client.post("/api/v1/set-image", &request).await?;
    if !print_data(cx.output, &response)? {
        for result in &response.results {
            match result.outcome {
                ApplyOutcome::Unchanged => println!("role/{} unchanged", result.name),
                _ => println!("role/{} image updated (generation {})", result.name, result.generation),
            }
        }
    }
    match wait {
        Some(timeout) => {
            let roles = response.results.into_iter().map(|r| r.name).collect();
            observe::status(cx, &Selection::Roles(roles), Some(timeout)).await
        }
        None => Ok(()),
    }
}

pub async fn resources(cx: &Context, role: &str, cpus: Option<Cpus>, memory: Option<Memory>) -> Result<()> {
    change(cx, role, "resources", |spec| {
        if let Some(cpus) = cpus {
            spec.resources.cpus = Some(cpus);
        }
        if let Some(memory) = &memory {
            spec.resources.memory = Some(memory.clone());
        }
    })
    .await
}

/// Reads the role, applies `edit` to its spec, validates, and stores it if its revision is still the one read;
/// on a conflict, starts over (at most [`ATTEMPTS`] times).
async fn change(cx: &Context, name: &str, what: &str, edit: impl Fn(&mut RoleSpec)) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let view = fetch_role(cx, name).await?;
        let mut role = view.role.clone();
        edit(&mut role.spec);
        if role.spec == view.role.spec {
            if !print_data(cx.output, &view)? {
                println!("role/{name} unchanged");
            }
            return Ok(());
        }
        let object = Object::Role(role);
        let problems = validate_object(&object);
        if !problems.is_empty() {
            return Err(CliError::invalid(problems, "nothing was changed"));
        }
        match cx.client.put::<_, RoleView>(&role_path(name), &object).await {
            Ok(stored) => {
                if !print_data(cx.output, &stored)? {
                    println!("role/{name} {what} updated (generation {})", stored.role.metadata.generation);
                }
                return Ok(());
            }
            Err(ClientError::Api { status: StatusCode::CONFLICT, .. }) if attempt < ATTEMPTS => continue,
            Err(err) => return Err(err.into()),
        }
    }
}
