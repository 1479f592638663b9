//! `set image` and `set resources`: read the role, change one field, write it back with compare-and-swap.

use ballast_specs::wire::RoleView;
use ballast_specs::{validate_object, Cpus, Memory, Object, RoleSpec};
use reqwest::StatusCode;

use super::{fetch_role, role_path, Context};
use crate::client::ClientError;
use crate::error::{CliError, Result};
use crate::render::print_data;

/// How often a change is tried when someone else changed the role in between.
const ATTEMPTS: usize = 3;

pub async fn image(cx: &Context, role: &str, image: String) -> Result<()> {
    change(cx, role, "image", |spec| spec.image = image.clone()).await
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
