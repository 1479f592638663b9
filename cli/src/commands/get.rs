//! `get roles|hosts [NAME]` and `delete role|host NAME`.

use ballast_specs::wire::{List, RoleView};
use ballast_specs::Object;

use super::{fetch_role, host_path, role_path, Context};
use crate::error::{CliError, Result};
use crate::render::{or_dash, print_data, table};
use crate::KindArg;

pub async fn roles(cx: &Context, name: Option<&str>) -> Result<()> {
    let views = match name {
        Some(name) => {
            let view = fetch_role(cx, name).await?;
            if print_data(cx.output, &view)? {
                return Ok(());
            }
            vec![view]
        }
        None => {
            let list: List<RoleView> = cx.client.get("/api/v1/roles").await?;
            if print_data(cx.output, &list)? {
                return Ok(());
            }
            list.items
        }
    };
    if views.is_empty() {
        eprintln!("no roles found");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            let spec = &view.role.spec;
            vec![
                view.role.metadata.name.clone(),
                or_dash(spec.hosts.join(",")),
                spec.image.clone(),
                spec.resources.cpus.map(|c| c.to_string()).unwrap_or_else(|| "-".to_string()),
                spec.resources.memory.as_ref().map(|m| m.to_string()).unwrap_or_else(|| "-".to_string()),
                view.role.metadata.generation.to_string(),
                if view.control.paused { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    print!("{}", table(&["NAME", "HOSTS", "IMAGE", "CPUS", "MEMORY", "GENERATION", "PAUSED"], &rows));
    Ok(())
}

pub async fn hosts(cx: &Context, name: Option<&str>) -> Result<()> {
    let objects = match name {
        Some(name) => {
            let object: Object = cx
                .client
                .get_optional(&host_path(name))
                .await?
                .ok_or_else(|| CliError::Failed(format!("host {name:?} not found")))?;
            if print_data(cx.output, &object)? {
                return Ok(());
            }
            vec![object]
        }
        None => {
            let list: List<Object> = cx.client.get("/api/v1/hosts").await?;
            if print_data(cx.output, &list)? {
                return Ok(());
            }
            list.items
        }
    };
    let rows: Vec<Vec<String>> = objects
        .iter()
        .filter_map(|object| match object {
            Object::Host(host) => Some(vec![
                host.metadata.name.clone(),
                host.spec.address.clone(),
                host.spec.user.clone(),
                host.spec.port.to_string(),
            ]),
            Object::Role(_) => None,
        })
        .collect();
    if rows.is_empty() {
        eprintln!("no hosts found");
        return Ok(());
    }
    print!("{}", table(&["NAME", "ADDRESS", "USER", "PORT"], &rows));
    Ok(())
}

pub async fn delete(cx: &Context, kind: KindArg, name: &str) -> Result<()> {
    let (path, noun) = match kind {
        KindArg::Roles => (role_path(name), "role"),
        KindArg::Hosts => (host_path(name), "host"),
    };
    cx.client.delete(&path).await?;
    println!("{noun}/{name} deleted");
    Ok(())
}
