//! BENCHMARKS.md: the machine, the method, the targets met or missed, and every figure (median, min, max, n)
//! with its ratio to ballast; the analysis written by hand in `e2e/bench/analysis.md` is appended as it is.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::{Results, Summary};
use crate::Bench;

/// Facts about the machine and the tools, gathered at the start of the run.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    date: String,
    cpus: String,
    memory: String,
    kernel: String,
    docker: String,
    etcd: String,
    ansible: String,
    hosts: usize,
}

impl Machine {
    pub async fn gather(bench: &Bench) -> Machine {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_default();
        let memory = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches(" kB").to_string()))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or_else(String::new, |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
        let first_line = |s: String| s.lines().next().unwrap_or_default().trim().to_string();
        let docker = bench
            .docker_cli(1, &["version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"])
            .await
            .unwrap_or_default();
        let etcd =
            crate::output(tokio::process::Command::new("etcd").arg("--version")).await.unwrap_or_default();
        let ansible =
            crate::output(tokio::process::Command::new(bench.venv.join("bin/ansible")).arg("--version"))
                .await
                .unwrap_or_default();
        let pip = crate::output(
            tokio::process::Command::new(bench.venv.join("bin/python3"))
                .args(["-m", "pip", "show", "ansible"]),
        )
        .await
        .unwrap_or_default();
        let bundle = pip.lines().find_map(|l| l.strip_prefix("Version: ")).unwrap_or("?").to_string();
        Machine {
            date: crate::output(tokio::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
                .await
                .map(first_line)
                .unwrap_or_default(),
            cpus: format!("{cpus} ({model})"),
            memory,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            docker: first_line(docker),
            etcd: first_line(etcd),
            ansible: format!(
                "{} (the `ansible` {bundle} bundle, with community.docker)",
                first_line(ansible)
            ),
            hosts: bench.rig.hosts(),
        }
    }
}

/// A run as saved (JSON): enough to write its report again, e.g. after `e2e/bench/analysis.md` changed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Run {
    pub machine: Machine,
    pub results: Results,
    pub n: usize,
    pub provenance: String,
    pub seconds: f64,
}

/// The whole report.
pub fn render(run: &Run) -> String {
    let (r, machine, provenance) = (&run.results, &run.machine, run.provenance.as_str());
    let took = Duration::from_secs_f64(run.seconds);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmarks\n\n\
         ballast against its floor (the Docker API by hand), Docker Swarm and Ansible, on the e2e rig (issues 3 and 6).\n\
         Written by `bash e2e/bench/run.sh` (n = {n} per figure); do not edit by hand: the analysis at the end comes\n\
         from `e2e/bench/analysis.md`. The machine is shared and noisy: compare medians and ratios, not single runs.\n",
        n = run.n
    );
    let _ = writeln!(out, "## Machine and run\n\n| | |\n|---|---|");
    for (k, v) in [
        ("date", machine.date.clone()),
        ("CPUs (nproc)", machine.cpus.clone()),
        ("memory", machine.memory.clone()),
        ("kernel", machine.kernel.clone()),
        ("Docker (each rig host's dockerd)", machine.docker.clone()),
        ("etcd", machine.etcd.clone()),
        ("Ansible", machine.ansible.clone()),
        (
            "rig",
            format!(
                "{} hosts: network namespaces, each with its own dockerd and sshd (`e2e/rig/up.sh`)",
                machine.hosts
            ),
        ),
        (
            "run",
            format!(
                "n = {} per figure, {:.1} min in all{}",
                run.n,
                took.as_secs_f64() / 60.0,
                if provenance.is_empty() { String::new() } else { format!("; {provenance}") }
            ),
        ),
    ] {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    out.push_str(METHOD);
    targets(&mut out, r);
    figures(&mut out, r, machine.hosts);
    if !r.errors.is_empty() {
        let _ = writeln!(out, "\n## Sections that failed in this run\n");
        for (section, error) in &r.errors {
            let _ = writeln!(out, "- **{section}**: {}", error.replace('\n', " "));
        }
    }
    let analysis = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/analysis.md");
    if let Ok(text) = std::fs::read_to_string(&analysis) {
        let _ = write!(out, "\n{}", text.trim_end());
        out.push('\n');
    }
    out
}

const METHOD: &str = "
## How it is measured

- **Poller.** A thread sends `GET /up` to the rig host's port 3000 every 10 ms for the whole of each figure and
  records every answer with its time. *Answers* = the first 200 whose body is the expected version;
  *downtime* = the longest window between two successive 200s that overlaps the change (with no downtime it
  shows the poll period, ~10 ms).
- **t0** is when the command starts: the `ballast` / `docker` / `ansible-playbook` process is spawned (the
  CLI's own start-up counts), or the first API call of the floor. For out-of-band drift, t0 is when the
  drifting API call (`docker rm -f`, `docker update`) has returned.
- **Memory restore** times come from dockerd's own `update` events (drift event → restoring event), so they
  need no polling; restarts compare the container id, `StartedAt` and `RestartCount` before and after.
- **ballast** is the release `ballastd` with a real etcd 3.4, reaching the hosts over SSH (russh) like in
  production; each host's Docker socket sits behind a recording proxy in the bench process (one more unix
  socket hop) that logs every API call with its time: that gives the call counts and the timing breakdowns.
  The role has the seed's shape: stop-first, `ports: [\"3000:3000\"]`, health `/up` on 3000 with
  `interval: 1s` (first probes at 25 ms, doubling up to 1 s), memory 256m. Rows 2-4 use `--resync 30s`
  (reactions come from Docker events), rows 5-6 `--resync 1s`.
- **ARP.** On every rig host the kernel resends unanswered ARP requests on `docker0` after 10 ms instead of
  its default 1 s (`net.ipv4.neigh.docker0.retrans_time_ms`). A probe that reaches the published port while the
  new container's address is not reachable yet otherwise makes the kernel wait up to 1 s before asking again:
  every probed stop-first replacement, by any tool, would show up to 1 s more downtime (row 1 shows the floor
  both ways). Real traffic during a stop-first replacement meets the same wait on a default kernel.
- **Images** v1/v2/v3 are pulled on the hosts before the runs (row 6 removes them: it starts from empty hosts).
- Floor, ballast and Ansible run on host 1, Swarm on host 2 (identical hosts), one after the other.
";

fn targets(out: &mut String, r: &Results) {
    let _ = writeln!(out, "\n## Targets\n\n| target | measured (medians) | verdict |\n|---|---|---|");
    let ratio = |a: &str, b: &str| Some(r.median(a)? / r.median(b)?);
    // Image change ≤ 1.2× its floor.
    if let (Some(q), Some(b), Some(f)) =
        (ratio("ballast.image", "floor.replace"), r.median("ballast.image"), r.median("floor.replace"))
    {
        let verdict = if q <= 1.2 {
            format!("met ({:.0}% under the bound)", (1.2 - q) / 1.2 * 100.0)
        } else {
            format!("**missed** by {} ({q:.2}× against 1.2×)", fmt(b - 1.2 * f, "ms"))
        };
        let _ = writeln!(out, "| image change ≤ 1.2× its floor (replacement by hand through the API) | ballast {} / floor {} = {q:.2}× | {verdict} |", fmt(b, "ms"), fmt(f, "ms"));
    }
    if let (Some(b), Some(f)) = (r.median("ballast.image.gap"), r.median("floor.replace.gap")) {
        let verdict = if b <= f {
            format!("met ({} shorter)", fmt(f - b, "ms"))
        } else {
            format!("**missed** by {}", fmt(b - f, "ms"))
        };
        let _ = writeln!(
            out,
            "| downtime no longer than the floor's | ballast {} / floor {} | {verdict} |",
            fmt(b, "ms"),
            fmt(f, "ms")
        );
    }
    for (peer, key, bound) in [
        ("Swarm (defaults)", "swarm.image", 1.5),
        ("Ansible (defaults)", "ansible.image.default", 2.5),
        ("Ansible (pipelining)", "ansible.image.pipelining", 2.5),
    ] {
        if let Some(q) = ratio(key, "ballast.image") {
            let _ =
                writeln!(out, "| {peer} / ballast ≥ {bound} on row 2 | {q:.2}× | {} |", at_least(q, bound));
        }
    }
    if let Some(q) = ratio("swarm.rm.tuned", "ballast.rm") {
        let _ = writeln!(
            out,
            "| tuned Swarm (`--restart-delay 0s`) / ballast ≥ 4 on row 3 | {q:.2}× | {} |",
            at_least(q, 4.0)
        );
    }
    if let (Some(t), Some(restarts)) = (
        r.get("ballast.mem").and_then(|f| f.summary()),
        r.get("ballast.mem.restarts").and_then(|f| f.summary()),
    ) {
        let fast = t.median <= 100.0;
        let verdict = match (fast, restarts.max == 0.0) {
            (true, true) => format!("met (max {})", fmt(t.max, "ms")),
            (false, true) => format!("**missed**: {} over 0.1 s", fmt(t.median - 100.0, "ms")),
            (_, false) => "**missed**: restarted".to_string(),
        };
        let _ = writeln!(
            out,
            "| memory restored in place, 0 restarts, ≤ 0.1 s | {} ({} restarts in {} drifts) | {verdict} |",
            fmt(t.median, "ms"),
            restarted(r),
            restarts.n
        );
    }
    if let (Some(calls), Some(lists)) = (
        r.get("fleet.noop.calls").and_then(|f| f.summary()),
        r.get("fleet.noop.list").and_then(|f| f.summary()),
    ) {
        let verdict = if calls.median <= 1.0 && lists.median <= 1.0 {
            "met".to_string()
        } else {
            format!("**missed**: {} calls instead of 1", fmt(calls.median, "calls"))
        };
        let noun = if calls.median == 1.0 { "call" } else { "calls" };
        let _ = writeln!(out, "| a converged host costs one Docker list call per resync | {} {noun} ({} list) per host per resync | {verdict} |", fmt(calls.median, "calls"), fmt(lists.median, "calls"));
    }
    if let Some(w) = r.get("fleet.noop.writes").and_then(|f| f.summary()) {
        let total: f64 = r.get("fleet.noop.writes").map_or(0.0, |f| f.values.iter().sum());
        let verdict = if total == 0.0 { "met".to_string() } else { format!("**missed**: {total} writes") };
        let _ =
            writeln!(out, "| … and no etcd writes | {total} writes in {} resync periods | {verdict} |", w.n);
    }
    if let Some(failed) = r.get("downtime.proxy") {
        let total: f64 = failed.values.iter().sum();
        let verdict = if total == 0.0 { "met".to_string() } else { format!("**missed**: {total} failed") };
        let _ = writeln!(out, "| an image change behind the proxy fails no request (row 7) | {total} failed in {} changes under load | {verdict} |", failed.values.len());
    }
}

/// How many of ballast's memory restores restarted the container.
fn restarted(r: &Results) -> usize {
    r.get("ballast.mem.restarts").map_or(0, |f| f.values.iter().filter(|v| **v > 0.0).count())
}

fn at_least(q: f64, bound: f64) -> String {
    if q >= bound {
        format!("met ({:.0}% over the bound)", (q / bound - 1.0) * 100.0)
    } else {
        format!("**missed** by {:.2}× ({:.0}% short)", bound - q, (1.0 - q / bound) * 100.0)
    }
}

fn figures(out: &mut String, r: &Results, hosts: usize) {
    let _ = writeln!(out, "\n## 1. Floor: Docker by hand on a rig host\n");
    table(
        out,
        r,
        &[
            "floor.run",
            "floor.replace",
            "floor.replace.gap",
            "floor.replace.arp",
            "floor.replace.arp.gap",
            "floor.api.stop",
            "floor.api.remove",
            "floor.api.create",
            "floor.api.start",
            "floor.api.update",
            "floor.api.inspect",
            "floor.api.list",
        ],
        None,
    );

    let _ = writeln!(out, "\n## 2. Image change → the new version answers `/up` (v1 → v2 → v1 ...)\n");
    compare(
        out,
        r,
        &[
            ("floor (by hand through the API)", "floor.replace", "floor.replace.gap"),
            ("**ballast** (`ballast set image`)", "ballast.image", "ballast.image.gap"),
            ("Swarm, defaults", "swarm.image", "swarm.image.gap"),
            ("Ansible, defaults", "ansible.image.default", "ansible.image.default.gap"),
            ("Ansible, pipelining", "ansible.image.pipelining", "ansible.image.pipelining.gap"),
        ],
        "ballast.image",
    );
    let _ = writeln!(out, "\nOther figures of the same runs:\n");
    table(
        out,
        r,
        &["ballast.image.cli", "ansible.image.default.exit", "ansible.image.pipelining.exit"],
        None,
    );
    let _ = writeln!(out, "\nTuned Swarm (`--update-delay 0s --update-order start-first`) cannot keep `3000:3000` published on a\n\
        single node without the routing mesh: the new task stays Pending (\"host-mode port already in use\"). Start-first is\n\
        therefore measured without a published port, for both, as the time until only the new container runs:\n");
    compare(
        out,
        r,
        &[
            ("**ballast** start-first", "ballast.startfirst", ""),
            ("Swarm start-first, `--update-delay 0s`", "swarm.startfirst", ""),
        ],
        "ballast.startfirst",
    );
    table(out, r, &["ballast.startfirst.overlap"], None);
    breakdown(out, r, "ballast.image.timeline", "Where ballast's image change goes (Docker calls seen by the proxy, t0 = `ballast set image` spawned)");

    let _ = writeln!(out, "\n## 3. Out-of-band removal (`docker rm -f`) → the replacement answers\n");
    compare(
        out,
        r,
        &[
            ("**ballast**", "ballast.rm", "ballast.rm.gap"),
            ("Swarm, defaults (restart delay 5 s)", "swarm.rm.default", "swarm.rm.default.gap"),
            ("Swarm, `--restart-delay 0s`", "swarm.rm.tuned", "swarm.rm.tuned.gap"),
        ],
        "ballast.rm",
    );
    let _ = writeln!(out, "\nAnsible has no watcher: the container stays gone until someone runs the playbook again (then it is row 2's run).");
    breakdown(
        out,
        r,
        "ballast.rm.timeline",
        "Where ballast's replacement goes (t0 = `docker rm -f` returned)",
    );

    let _ = writeln!(
        out,
        "\n## 4. Out-of-band memory change (`docker update --memory 512m`) → restored to 256m\n"
    );
    let _ = writeln!(out, "| tool | how | time (median, min-max) | restarts | downtime (median, min-max) | n | time / ballast |\n|---|---|---:|---:|---:|---:|---:|");
    for (tool, how, key, restarts, gap) in [
        (
            "**ballast**",
            "by itself (Docker event → in-place update), drift → restoring update event",
            "ballast.mem",
            "ballast.mem.restarts",
            "ballast.mem.gap",
        ),
        (
            "Ansible",
            "`ansible-playbook` run right after the drift → restoring update",
            "ansible.mem",
            "ansible.mem.restarts",
            "ansible.mem.gap",
        ),
        (
            "Swarm",
            "does not see the drift; `docker service update --force --limit-memory 256m` → new task answers",
            "swarm.mem",
            "swarm.mem.restarts",
            "swarm.mem.gap",
        ),
    ] {
        let Some(t) = r.get(key).and_then(|f| f.summary()) else { continue };
        let rs = r.get(restarts).and_then(|f| f.summary());
        let g = r.get(gap).and_then(|f| f.summary());
        let _ = writeln!(
            out,
            "| {tool} | {how} | {} | {} | {} | {} | {} |",
            span(t, "ms"),
            rs.map_or("?".into(), |s| if s.max == s.min {
                fmt(s.max, "")
            } else {
                format!("{}-{}", s.min, s.max)
            }),
            g.map_or("?".into(), |g| span(g, "ms")),
            t.n,
            ratio_text(r, key, "ballast.mem"),
        );
    }
    table(out, r, &["ansible.mem.events"], None);
    breakdown(
        out,
        r,
        "ballast.mem.timeline",
        "Where ballast's restore goes (t0 = the drifting `docker update` returned)",
    );

    let _ = writeln!(
        out,
        "\n## 5. No-op cost of a converged fleet ({hosts} hosts, one role each, `--resync 1s`)\n"
    );
    table(
        out,
        r,
        &[
            "fleet.noop.calls",
            "fleet.noop.list",
            "fleet.noop.other",
            "fleet.noop.writes",
            "fleet.noop.cpu",
            "ansible.noop.default",
            "ansible.noop.pipelining",
        ],
        None,
    );
    for note in r.notes_of("fleet.noop") {
        let _ = writeln!(out, "\n{note}");
    }

    let _ = writeln!(out, "\n## 6. Scale: empty hosts → converged (real rig hosts)\n");
    table(out, r, &["fleet.scale.1", "fleet.scale.n", "fleet.scale.role"], None);
    if let (Some(one), Some(all)) = (r.median("fleet.scale.1"), r.median("fleet.scale.n")) {
        let _ = writeln!(
            out,
            "\n{hosts} hosts take {:.2}× the time of 1 (perfectly serial would be {hosts}×): the hosts converge in parallel.",
            all / one
        );
    }
    if let (Some(one), Some(role)) = (r.median("fleet.scale.1"), r.median("fleet.scale.role")) {
        let _ = writeln!(out, "One role spanning the {hosts} hosts takes {:.2}× one host: a first deploy creates on every host at once (a replacement, by design, rolls one host at a time).", role / one);
    }
    let _ = writeln!(
        out,
        "\n### 1,000 simulated hosts\n\nMeasured by another command, on in-memory hosts rather than rig hosts \
         (`cargo run --release -p ballast-operator --example simulate -- --hosts 1000`): its figures are in the \
         analysis below (\"Row 6: 1,000 simulated hosts\")."
    );
    downtime(out, r);
}

/// Row 7: failed requests during an image change under load, tool by tool; the proxy's latency.
fn downtime(out: &mut String, r: &Results) {
    let _ = writeln!(
        out,
        "\n## 7. Zero downtime: failed requests during an image change under load (app boots in {} s)\n",
        crate::downtime::BOOT
    );
    let _ = writeln!(out, "{} `GET /up` a second, each on a new connection, from before the change until the new version answers; every answer that is not a 200 and every failed connection counts.\n", crate::downtime::RATE);
    let _ = writeln!(out, "| tool | failed requests (median, min-max) | n |\n|---|---:|---:|");
    for (tool, key) in [
        ("ballast with its proxy (start-first behind Caddy)", "downtime.proxy"),
        ("ballast stop-first (published port)", "downtime.stopfirst"),
        ("Docker Swarm stop-first (host-mode port)", "swarm.downtime"),
        ("stop-first by hand (the floor)", "downtime.floor"),
    ] {
        match r.get(key).and_then(|f| f.summary()) {
            Some(s) => {
                let _ = writeln!(out, "| {tool} | {} | {} |", span(s, ""), s.n);
            }
            None => {
                let _ = writeln!(out, "| {tool} | not measured in this run | |");
            }
        }
    }
    table(out, r, &["downtime.proxy.time", "downtime.stopfirst.time"], None);
    table(
        out,
        r,
        &["proxy.latency.p50", "proxy.latency.direct.p50", "proxy.latency.p99", "proxy.latency.direct.p99"],
        None,
    );
}

/// Rows of tools on the same figure: time and downtime with their spread, and the ratio to ballast.
fn compare(out: &mut String, r: &Results, rows: &[(&str, &str, &str)], ballast: &str) {
    let _ = writeln!(out, "| tool | answers (median, min-max) | downtime (median, min-max) | n | time / ballast |\n|---|---:|---:|---:|---:|");
    for (tool, key, gap) in rows {
        let Some(t) = r.get(key).and_then(|f| f.summary()) else {
            let _ = writeln!(out, "| {tool} | not measured in this run | | | |");
            continue;
        };
        let g = r.get(gap).and_then(|f| f.summary());
        let _ = writeln!(
            out,
            "| {tool} | {} | {} | {} | {} |",
            span(t, "ms"),
            g.map_or("—".into(), |g| span(g, "ms")),
            t.n,
            ratio_text(r, key, ballast)
        );
    }
}

fn ratio_text(r: &Results, key: &str, base: &str) -> String {
    match (r.median(key), r.median(base)) {
        (Some(a), Some(b)) if key != base && b > 0.0 => format!("{:.2}×", a / b),
        (Some(_), Some(_)) => "1".to_string(),
        _ => "?".to_string(),
    }
}

/// A plain table of figures: label, median, min, max, n.
fn table(out: &mut String, r: &Results, keys: &[&str], _title: Option<&str>) {
    let rows: Vec<_> = keys.iter().filter_map(|k| r.get(k)).filter_map(|f| Some((f, f.summary()?))).collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n| figure | median | min | max | n |\n|---|---:|---:|---:|---:|");
    for (f, s) in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            f.label,
            fmt(s.median, &f.unit),
            fmt(s.min, &f.unit),
            fmt(s.max, &f.unit),
            s.n
        );
    }
}

fn breakdown(out: &mut String, r: &Results, key: &str, title: &str) {
    for note in r.notes_of(key) {
        let _ = writeln!(out, "\n{title}:\n\n{note}");
    }
}

fn span(s: Summary, unit: &str) -> String {
    format!("{} ({} – {})", fmt(s.median, unit), fmt(s.min, unit), fmt(s.max, unit))
}

/// `12.3 ms`, `123 ms`, `1.23 s`; counts without a unit when whole.
fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "ms" if v.abs() >= 1000.0 => format!("{:.2} s", v / 1000.0),
        "ms" if v.abs() >= 100.0 => format!("{v:.0} ms"),
        "ms" => format!("{v:.1} ms"),
        "" if v.abs() >= 1000.0 => format!("{:.2} s", v / 1000.0),
        "" if v.abs() >= 100.0 => format!("{v:.0}"),
        "" if v.fract() == 0.0 => format!("{v:.0}"),
        "" => format!("{v:.1}"),
        _ if v.fract() == 0.0 => format!("{v:.0}"),
        _ => format!("{v:.2}"),
    }
}
