//! Rows 2, 4 and 5 for Ansible on host 1: a playbook with one `community.docker.docker_container` task (the
//! role's shape: `3000:3000`, memory 256m) run over SSH as root with the rig's key and known_hosts; the module
//! talks to the host's Docker socket. Ansible's own settings are left at their defaults (SSH ControlPersist
//! on), once as they are and once with pipelining. The playbook does not gather facts.
//!
//! Ansible has no watcher: an out-of-band removal (row 3) stays until someone runs the playbook again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::ballast::{restart_count, wait_past};
use crate::docker::{self, live_updates};
use crate::poller::Poller;
use crate::stage::ROLE_MEMORY;
use crate::stats::ms;
use crate::{log, output, text, Bench, WAIT};

const HOST: usize = 1;
const NAME: &str = "bench-ansible";
const LABEL: &str = "bench.ansible";

/// The playbook and inventory in a folder of their own, and the Ansible home (control sockets, temp files).
struct Playbook {
    dir: PathBuf,
    venv: PathBuf,
}

pub async fn run(bench: &mut Bench) -> Result<()> {
    let docker = bench.docker(HOST)?;
    docker::remove_labelled(&docker, LABEL).await?;
    let book = Playbook::write(bench)?;
    let result = measure(bench, &docker, &book).await;
    book.close_connections().await;
    docker::remove_labelled(&docker, LABEL).await?;
    result
}

async fn measure(bench: &mut Bench, docker: &bollard::Docker, book: &Playbook) -> Result<()> {
    let poller = Poller::start(bench.up_addr(HOST)?);
    let n = bench.n;
    book.run(&bench.image("v1"), false).await?;
    poller.first_ok(Instant::now() - crate::poller::PERIOD, Some("v1"), WAIT).await?;

    // Row 2: image change, default settings and pipelining.
    let mut tag = "v1";
    for (pipelining, key) in [(false, "default"), (true, "pipelining")] {
        let (mut total, mut gap, mut exit) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            tag = if i % 2 == 0 { "v2" } else { "v1" };
            let t0 = Instant::now();
            let out = book.run(&bench.image(tag), pipelining).await?;
            let t_exit = Instant::now();
            ensure!(out.contains("changed=1"), "the playbook changed nothing:\n{}", crate::tail(&out));
            let t1 = poller.first_ok(t0, Some(tag), WAIT).await?;
            total.push(ms(t1 - t0));
            gap.push(ms(poller.longest_gap(t0, t1)));
            exit.push(ms(t_exit - t0));
        }
        let r = &mut bench.results;
        let how = if pipelining { "with pipelining" } else { "default settings" };
        r.add(
            &format!("ansible.image.{key}"),
            &format!("`ansible-playbook` ({how}) → first 200 of the new version"),
            "ms",
            total,
        );
        r.add(&format!("ansible.image.{key}.gap"), &format!("downtime ({how})"), "ms", gap);
        r.add(&format!("ansible.image.{key}.exit"), &format!("`ansible-playbook` ({how}) exits"), "ms", exit);
        // An image change ends at a tag the loop may start from again: make the next loop start at v1.
        if tag == "v2" {
            book.run(&bench.image("v1"), pipelining).await?;
            tag = "v1";
        }
    }
    log("ansible row 2 measured");

    // Row 4: out-of-band memory change, then a playbook run (default settings) restores it.
    let id = container(docker).await?;
    let mut updates = live_updates(docker, LABEL, &id).await?;
    let (mut restored, mut from_drift, mut restarts, mut gap) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let was = docker::state(docker, &id).await?.context("the ansible container vanished")?;
        updates.drain();
        let before = Instant::now();
        docker::update_memory(docker, &id, 2 * ROLE_MEMORY).await?;
        let drift = updates.next(WAIT).await?;
        let t0 = Instant::now();
        book.run(&bench.image(tag), false).await?;
        let restore = updates.next(WAIT).await.context("the playbook did not restore the memory")?;
        ensure!(
            drift.id == id && restore.id == id,
            "update events of another container: {drift:?} {restore:?}"
        );
        let t1 = Instant::now();
        let now = docker::state(docker, &id).await?.context("the ansible container was removed")?;
        ensure!(now.memory == ROLE_MEMORY, "memory is {} after the playbook, not {ROLE_MEMORY}", now.memory);
        restored.push(ms(t1 - t0));
        from_drift.push((restore.time_nano - drift.time_nano) as f64 / 1e6);
        restarts.push(restart_count(&was, &now, container(docker).await? != id));
        let end = wait_past(&poller, t1).await;
        gap.push(ms(poller.longest_gap(before, end)));
    }
    let r = &mut bench.results;
    r.add("ansible.mem", "`ansible-playbook` right after the drift → restored", "ms", restored);
    r.add(
        "ansible.mem.events",
        "drift → restored (dockerd's update events; the run starts right after the drift)",
        "ms",
        from_drift,
    );
    r.add("ansible.mem.restarts", "restarts while restoring", "restarts", restarts);
    r.add("ansible.mem.gap", "downtime (longest window with no 200)", "ms", gap);
    drop(updates);
    log("ansible row 4 measured");

    // Row 5: a no-op run on a converged host.
    for (pipelining, key) in [(false, "default"), (true, "pipelining")] {
        let mut noop = Vec::new();
        for _ in 0..n {
            let t0 = Instant::now();
            let out = book.run(&bench.image(tag), pipelining).await?;
            noop.push(ms(t0.elapsed()));
            ensure!(
                out.contains("changed=0"),
                "the no-op playbook changed something:\n{}",
                crate::tail(&out)
            );
        }
        let how = if pipelining { "with pipelining" } else { "default settings" };
        bench.results.add(
            &format!("ansible.noop.{key}"),
            &format!("no-op `ansible-playbook` ({how})"),
            "ms",
            noop,
        );
    }
    log("ansible row 5 measured");
    Ok(())
}

/// The running Ansible-made container.
async fn container(docker: &bollard::Docker) -> Result<String> {
    let ids = docker::ids(docker, LABEL, false).await?;
    ensure!(ids.len() == 1, "expected one running ansible container, found {}", ids.len());
    Ok(ids[0].clone())
}

impl Playbook {
    fn write(bench: &Bench) -> Result<Playbook> {
        let dir = bench.work.path().join("ansible");
        std::fs::create_dir_all(dir.join("home")).context("creating the ansible folder")?;
        let python = bench.venv.join("bin/python3");
        let inventory = format!(
            "[rig]\nh{HOST} ansible_host={addr} ansible_user=root ansible_ssh_private_key_file={key} \
             ansible_ssh_common_args='-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes' \
             ansible_python_interpreter={python}\n",
            addr = bench.rig.addr(HOST)?,
            key = text(&bench.rig.ssh_key())?,
            known = text(&bench.rig.known_hosts())?,
            python = text(&python)?,
        );
        let playbook = format!(
            "- hosts: rig
  gather_facts: false
  tasks:
    - name: app container
      community.docker.docker_container:
        name: {NAME}
        image: \"{{{{ image }}}}\"
        state: started
        published_ports: [\"3000:3000\"]
        memory: 256m
        memory_swap: 512m
        restart_policy: unless-stopped
        labels: {{{LABEL}: \"1\"}}
        docker_host: unix://{socket}
",
            socket = text(&bench.socket(HOST))?
        );
        std::fs::write(dir.join("inventory.ini"), inventory).context("writing the inventory")?;
        std::fs::write(dir.join("playbook.yml"), playbook).context("writing the playbook")?;
        Ok(Playbook { dir, venv: bench.venv.clone() })
    }

    /// `ansible-playbook -e image=IMAGE`; its output.
    async fn run(&self, image: &str, pipelining: bool) -> Result<String> {
        let mut command = tokio::process::Command::new(self.venv.join("bin/ansible-playbook"));
        command
            .current_dir(&self.dir)
            .env("ANSIBLE_HOME", self.dir.join("home"))
            .env("ANSIBLE_PIPELINING", if pipelining { "True" } else { "False" })
            .env("ANSIBLE_NOCOLOR", "1")
            .env_remove("ANSIBLE_CONFIG")
            .args(["-i", "inventory.ini", "playbook.yml", "-e"])
            .arg(format!("image={image}"));
        let out = tokio::time::timeout(Duration::from_secs(120), output(&mut command))
            .await
            .context("ansible-playbook ran for more than 120 s")??;
        ensure!(
            out.contains("failed=0") && out.contains("unreachable=0"),
            "the playbook failed:\n{}",
            crate::tail(&out)
        );
        Ok(out)
    }

    /// Ends the SSH master connections Ansible left behind (ControlPersist).
    async fn close_connections(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("home/cp")) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = tokio::process::Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", path.display()))
                .args(["-O", "exit", "bench"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await;
        }
    }
}
