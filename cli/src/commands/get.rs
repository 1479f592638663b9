//! `get roles|hosts [NAME]` and `delete role|host NAME`.

use ballast_specs::wire::{List, RoleView};
use ballast_specs::{Object, Proxy};

use super::{fetch_role, host_path, role_path, Context};
use crate::error::{CliError, Result};
use crate::render::{or_dash, print_data, table, Output};
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
    let wide = cx.output == Output::Wide;
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            let spec = &view.role.spec;
            let mut row = vec![
                view.role.metadata.name.clone(),
                or_dash(spec.hosts.join(",")),
                spec.image.clone(),
                spec.resources.cpus.map(|c| c.to_string()).unwrap_or_else(|| "-".to_string()),
                spec.resources.memory.as_ref().map(|m| m.to_string()).unwrap_or_else(|| "-".to_string()),
                view.role.metadata.generation.to_string(),
                if view.control.paused { "yes" } else { "no" }.to_string(),
            ];
            if wide {
                row.push(or_dash(spec.ports.join(",")));
                row.push(spec.proxy.as_ref().map(proxy_column).unwrap_or_else(|| "-".to_string()));
            }
            row
        })
        .collect();
    let mut headers = vec!["NAME", "HOSTS", "IMAGE", "CPUS", "MEMORY", "GENERATION", "PAUSED"];
    if wide {
        headers.extend(["PORTS", "PROXY"]);
    }
    print!("{}", table(&headers, &rows));
    Ok(())
}

/// `:80`, `:80 → 3000`, `:80 (a.example.com,b.example.com)`: the proxy's port, its target if not the health
/// check's, and the host names it routes on.
fn proxy_column(proxy: &Proxy) -> String {
    let mut text = format!(":{}", proxy.port);
    if let Some(port) = proxy.container_port {
        text.push_str(&format!(" → {port}"));
    }
    if !proxy.hosts.is_empty() {
        text.push_str(&format!(" ({})", proxy.hosts.join(",")));
    }
    text
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
