//! The clients of the hosts, one per host, made on first use and replaced when a host's spec changes.
//!
//! `ballastd` builds one pool and shares it: the leader's reconciler, the API's logs and exec, and the
//! `ballast plan` preview all reach a host through the same client, so a host sees one SSH connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ballast_specs::{Host, HostSpec};

use super::{Connector, DockerHost};

/// The hosts' clients, by host name.
pub struct HostPool {
    connector: Arc<dyn Connector>,
    clients: Mutex<HashMap<String, Client>>,
}

/// A host's client and the spec it was made for.
type Client = (HostSpec, Arc<dyn DockerHost>);

impl HostPool {
    pub fn new(connector: Arc<dyn Connector>) -> HostPool {
        HostPool { connector, clients: Mutex::default() }
    }

    /// The client of `host`, connected lazily; a new one when the host's spec changed.
    pub fn client(&self, host: &Host) -> Arc<dyn DockerHost> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let name = &host.metadata.name;
        if let Some((spec, client)) = clients.get(name) {
            if *spec == host.spec {
                return client.clone();
            }
        }
        let client = self.connector.connect(name, &host.spec);
        clients.insert(name.clone(), (host.spec.clone(), client.clone()));
        client
    }

    /// Forgets hosts no longer in the spec: those whose name `keep` refuses.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|name, _| keep(name));
    }
}
