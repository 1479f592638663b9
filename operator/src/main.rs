//! `ballastd`: the operator binary. Flags, logging, the store (a given etcd cluster or an embedded one), the HTTP API.
//!
//! Readiness: once the API listens, `ballastd` logs `listening` with the bound address and, with `--ready-file PATH`,
//! writes the API's base URL (`http://ADDR`, or `https://ADDR` with TLS; on 0.0.0.0 or `::` the loopback address)
//! to PATH atomically (write, then rename). Scripts and tests start it with `--listen 127.0.0.1:0 --ready-file F`
//! and wait for F to appear.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when it cannot run (etcd unusable, port taken),
//! 2 for a configuration it refuses (bad flags, bad token file or TLS files, a non-loopback listen address
//! without TLS and tokens and without `--insecure`).
//!
//! HA: every `ballastd` serves the API; they elect one leader on etcd (`--lease-ttl`), and only the leader
//! reconciles. Shutdown (SIGTERM/SIGINT): stop scheduling, let in-flight reconciles finish within
//! `--drain-timeout` (then abort them), resign (a standby takes over at once), drain HTTP, exit 0.

use std::future::Future;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{anyhow, Context};
use ballast_operator::access::ContainerAccess;
use ballast_operator::api::serve::ServeConfig;
use ballast_operator::api::{self, ApiName, ApiNames, AppState, Auth, Limits};
use ballast_operator::aws::{
    self, AwsSettings, EcrConfig, NoAws, RegistryCredentials, SecretSource, SecretsConfig,
};
use ballast_operator::etcd_local::EmbeddedEtcd;
use ballast_operator::hosts::{Connector, HostPool, RealConnector, SshConfig};
use ballast_operator::leader::{self, LeaderConfig};
use ballast_operator::metrics::Metrics;
use ballast_operator::proxy::Settings as ProxySettings;
use ballast_operator::reconcile::{self, Config, Preview};
use ballast_operator::runtime::RuntimeConfig;
use ballast_operator::store::etcd::EtcdStore;
use ballast_operator::store::{Election, SpecStore, StatusStore};
use ballast_specs::Duration;
use clap::{Parser, ValueEnum};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// How long the store may take to answer the startup check.
const STARTUP_CHECK: StdDuration = StdDuration::from_secs(20);
/// How long open HTTP connections may take to finish at shutdown.
const HTTP_DRAIN: StdDuration = StdDuration::from_secs(5);

/// ballastd: keeps Docker containers on plain hosts equal to the desired state in etcd, and serves the API.
#[derive(Debug, Parser)]
#[command(name = "ballastd", version)]
struct Args {
    /// etcd endpoints, comma separated (e.g. http://10.0.0.5:2379). Without it, ballastd runs its own etcd
    /// under --data-dir.
    #[arg(long, value_delimiter = ',', value_name = "URL,...")]
    etcd: Vec<String>,
    /// Address of the HTTP API. Port 0 picks a free port (see --ready-file).
    #[arg(long, default_value = "127.0.0.1:7373", value_name = "ADDR")]
    listen: SocketAddr,
    /// Where the embedded etcd keeps its data (used only without --etcd).
    #[arg(long, default_value = "/var/lib/ballast", value_name = "DIR")]
    data_dir: PathBuf,
    /// SSH private key used to reach the hosts.
    #[arg(long, value_name = "PATH")]
    ssh_key: Option<PathBuf>,
    /// OpenSSH known_hosts file the hosts' keys are verified against.
    #[arg(long, value_name = "PATH")]
    known_hosts: Option<PathBuf>,
    /// Token file: one `NAME write|read TOKEN` a line, `#` starts a comment. Without it no token is asked for;
    /// without it or without TLS, ballastd listens only on loopback addresses (unless --insecure).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Period of the full resync of every unit (e.g. 30s, 5m); at least 1s.
    #[arg(long, default_value = "30s", value_parser = parse_period, value_name = "DUR")]
    resync: Duration,
    /// How long secret values are cached before Secrets Manager is asked again (rotation is seen within it).
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DUR")]
    secrets_refresh: Duration,
    /// A registry (HOST[:PORT]) to treat as ECR, in addition to `*.dkr.ecr.*.amazonaws.com`; repeatable.
    #[arg(long = "ecr-registry", value_name = "HOST")]
    ecr_registries: Vec<String>,
    /// Serve the API only; do not reconcile (for a read-only replica, or to inspect a cluster).
    #[arg(long)]
    no_reconcile: bool,
    /// TTL of the leader lease in etcd: when the leader vanishes, a standby takes over after about this long
    /// (at once when it shuts down cleanly). The leader renews it every third of it.
    #[arg(long, default_value = "10s", value_parser = parse_lease_ttl, value_name = "DUR")]
    lease_ttl: Duration,
    /// At shutdown, how long in-flight reconciles may take to finish before they are aborted.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    drain_timeout: Duration,
    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Once listening, write the API's base URL (http://ADDR or https://ADDR) to this file.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// The Caddy image of the proxy ballast runs on each host that carries a proxied role (a mirror such as an
    /// ECR repository works; its registry is logged in to like the roles' images).
    #[arg(long, default_value = "caddy:2", value_parser = parse_image, value_name = "IMAGE")]
    proxy_image: String,
    /// The port of the proxy's admin API, on each host's loopback only.
    #[arg(long, default_value_t = 2019, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    proxy_admin_port: u16,
    #[command(flatten)]
    http: HttpFlags,
}

/// How the API is served: TLS, the names it answers to, and its limits.
#[derive(Debug, clap::Args)]
struct HttpFlags {
    /// Serve HTTPS with this certificate (PEM: the server's certificate, then its chain); needs --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Listen on a non-loopback address without TLS or without tokens anyway. Whoever is on the network path
    /// can read tokens, or anyone who reaches the port can change everything.
    #[arg(long)]
    insecure: bool,
    /// A name clients reach the API under (NAME or NAME:PORT; default port: the listen port), besides its
    /// addresses and, on loopback, localhost; repeatable. Other `Host` headers are refused (421).
    #[arg(long = "api-name", value_name = "NAME[:PORT]")]
    api_names: Vec<ApiName>,
    /// How long a client may take to send a request's head (and a TLS handshake); idle connections are
    /// closed after it too.
    #[arg(long, default_value = "10s", value_parser = parse_period, value_name = "DUR")]
    header_timeout: Duration,
    /// How long a request may take to be answered (exec: 10 minutes more; a stream such as logs -f is not
    /// limited once it has begun).
    #[arg(long, default_value = "30s", value_parser = parse_period, value_name = "DUR")]
    request_timeout: Duration,
    /// Open API connections at most; past it new ones get 503 (plain HTTP) or are closed (TLS).
    #[arg(long, default_value = "1024", value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    max_connections: u32,
    /// Heavy requests (plan, logs, exec) at once at most; past it they get 503.
    #[arg(long, default_value = "32", value_parser = clap::value_parser!(u32).range(1..=100_000), value_name = "N")]
    max_heavy_requests: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Why ballastd stopped early, and with which exit code.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ballastd: error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            tracing::error!("{error:#}");
            ExitCode::from(code)
        }
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    let auth = match &args.token_file {
        Some(path) => Auth::from_file(path).map_err(|e| config_error(e.into()))?,
        None => Auth::open(),
    };
    let tls = match (&args.http.tls_cert, &args.http.tls_key) {
        (Some(cert), Some(key)) => {
            Some(api::tls::server_config(cert, key).map_err(|e| config_error(e.into()))?)
        }
        _ => None,
    };
    check_exposure(&args, tls.is_some(), auth.required()).map_err(config_error)?;
    let secrets = [
        (args.token_file.as_deref(), "token file"),
        (args.ssh_key.as_deref(), "SSH key"),
        (args.http.tls_key.as_deref(), "TLS key"),
    ];
    for (path, what) in secrets {
        if let Some(path) = path {
            warn_if_shared(path, what);
        }
    }
    tracing::info!(
        resync = %args.resync,
        ssh_key = ?args.ssh_key,
        known_hosts = ?args.known_hosts,
        tokens = auth.required(),
        tls = tls.is_some(),
        "starting"
    );

    let (embedded, endpoints) = if args.etcd.is_empty() {
        let etcd = EmbeddedEtcd::start(&args.data_dir)
            .await
            .with_context(|| format!("cannot start the embedded etcd under {}", args.data_dir.display()))
            .map_err(run_error)?;
        let endpoint = etcd.endpoint();
        tracing::info!(%endpoint, data_dir = %args.data_dir.display(), "embedded etcd started");
        (Some(etcd), vec![endpoint])
    } else {
        (None, args.etcd.clone())
    };
    let result = serve(&args, auth, tls, &endpoints).await;
    if let Some(etcd) = embedded {
        match etcd.shutdown().await {
            Ok(()) => tracing::info!("embedded etcd stopped"),
            Err(e) => tracing::warn!(error = %e, "embedded etcd did not stop cleanly"),
        }
    }
    result.map_err(run_error)
}

/// Connects to the store, serves the API and (unless `--no-reconcile`) campaigns for leadership and
/// reconciles while leading, until SIGTERM or SIGINT.
async fn serve(
    args: &Args,
    auth: Auth,
    tls: Option<Arc<rustls::ServerConfig>>,
    endpoints: &[String],
) -> anyhow::Result<()> {
    // Signals are caught from here on: a SIGTERM right after readiness is a clean shutdown too.
    let signalled = shutdown_signal()?;
    let etcd = connect(endpoints).await?;
    let store: Arc<dyn SpecStore> = etcd.clone();
    let (secrets, registry) = aws_clients(args, store.as_ref()).await?;
    let connector: Arc<dyn Connector> = Arc::new(RealConnector {
        ssh: SshConfig { key_path: args.ssh_key.clone(), known_hosts: args.known_hosts.clone() },
    });
    // One client (one SSH session) per host, shared by the leader's reconciler, logs/exec and `ballast plan`.
    let hosts = Arc::new(HostPool::new(connector));
    let listener =
        TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().context("cannot read the bound address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base_url = format!("{scheme}://{}", reachable(address));
    let stop = CancellationToken::new();
    let mut metrics_registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut metrics_registry));
    let mut state = AppState::new(store.clone(), auth);
    state.hosts = Some(Arc::new(ContainerAccess::new(store.clone(), hosts.clone(), stop.clone())));
    // `ballast plan` on any ballastd: reads only, so the unfenced store.
    let proxy = ProxySettings { image: args.proxy_image.clone(), admin_port: args.proxy_admin_port };
    state.plans =
        Some(Arc::new(Preview::new(store.clone(), hosts.clone(), secrets.clone()).with_proxy(proxy.clone())));
    state.metrics = Arc::new(metrics_registry);
    state.names = Arc::new(ApiNames::new(address, args.http.api_names.clone()));
    state.limits =
        Arc::new(Limits::new(args.http.request_timeout.as_std(), args.http.max_heavy_requests as usize));
    let serving = ServeConfig {
        tls,
        header_timeout: args.http.header_timeout.as_std(),
        max_connections: fit_connections(args.http.max_connections as usize),
    };

    let reconciler = if args.no_reconcile {
        None
    } else {
        let config = LeaderConfig {
            identity: leader::default_identity(),
            ttl: args.lease_ttl.as_std(),
            drain: args.drain_timeout.as_std(),
            runtime: RuntimeConfig { resync: args.resync.as_std(), ..RuntimeConfig::default() },
        };
        let make_context = Arc::new(move |store: Arc<dyn StatusStore>| {
            reconcile::Context::new(
                store,
                hosts.clone(),
                secrets.clone(),
                registry.clone(),
                Config { proxy: proxy.clone(), ..Config::default() },
            )
        });
        let election: Arc<dyn Election> = etcd;
        Some(tokio::spawn(leader::run(election, config, metrics, make_context, stop.clone())))
    };
    let http_stop = CancellationToken::new();
    let mut server =
        tokio::spawn(api::serve::serve(listener, api::router(state), serving, http_stop.clone()));
    tracing::info!(address = %base_url, "listening");
    if let Some(path) = &args.ready_file {
        write_ready_file(path, &base_url)?;
    }
    let early = tokio::select! {
        () = signalled => None,
        served = &mut server => Some(served),
    };
    // Stop scheduling, drain or abort in-flight reconciles, resign; then drain HTTP.
    stop.cancel();
    if let Some(reconciler) = reconciler {
        let _ = reconciler.await;
        tracing::info!("reconciler stopped");
    }
    if let Some(served) = early {
        served.context("http server task failed")?;
        return Err(anyhow!("the http server stopped by itself"));
    }
    http_stop.cancel();
    match tokio::time::timeout(HTTP_DRAIN, &mut server).await {
        Ok(served) => served.context("http server task failed")?,
        Err(_) => {
            tracing::warn!(after = ?HTTP_DRAIN, "closing HTTP connections still open");
            server.abort();
        }
    }
    tracing::info!("http server stopped");
    Ok(())
}

/// Secrets Manager and ECR from the standard AWS configuration; without a region, no AWS (anonymous pulls,
/// roles with secrets report that secrets are not configured).
async fn aws_clients(
    args: &Args,
    store: &dyn SpecStore,
) -> anyhow::Result<(Arc<dyn SecretSource>, Arc<dyn RegistryCredentials>)> {
    let cluster_key = store.cluster_key().await.context("cannot read the cluster key from etcd")?;
    let secrets = SecretsConfig { cluster_key, refresh: args.secrets_refresh.as_std() };
    let ecr = EcrConfig { extra_registries: args.ecr_registries.clone(), ..EcrConfig::default() };
    match aws::from_env(&AwsSettings::default(), secrets, ecr).await {
        Ok(aws) => Ok((Arc::new(aws.secrets), Arc::new(aws.registry))),
        Err(e) => {
            tracing::warn!(error = %e, "AWS not configured: anonymous pulls only, and roles with secrets cannot start");
            Ok((Arc::new(NoAws), Arc::new(NoAws)))
        }
    }
}

/// Connects to etcd and checks it answers, so a wrong `--etcd` fails at startup, not at the first request.
async fn connect(endpoints: &[String]) -> anyhow::Result<Arc<EtcdStore>> {
    let shown = endpoints.join(",");
    let store = EtcdStore::connect(endpoints).await.with_context(|| format!("cannot use etcd at {shown}"))?;
    match tokio::time::timeout(STARTUP_CHECK, store.snapshot()).await {
        Ok(Ok(_)) => Ok(Arc::new(store)),
        Ok(Err(err)) => Err(anyhow!(err).context(format!("cannot use etcd at {shown}"))),
        Err(_) => Err(anyhow!("cannot use etcd at {shown}: no answer within {}s", STARTUP_CHECK.as_secs())),
    }
}

/// The address clients on this machine reach the API at: the bound one, or for an unspecified one (0.0.0.0,
/// ::) the loopback address of its family.
fn reachable(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bound.port()),
        _ => bound,
    }
}

/// Writes `url` to `path` through a temporary file and a rename, so a reader never sees half a line.
fn write_ready_file(path: &Path, url: &str) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, format!("{url}\n"))
        .with_context(|| format!("cannot write ready file {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write ready file {}", path.display()))
}

/// Catches SIGTERM and SIGINT from now on; the future resolves on the first of them.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // The AWS SDK logs response bodies at debug/trace, and an ECR token is not marked sensitive there.
        .add_directive("aws_smithy_runtime=info".parse().expect("a valid directive"))
        .add_directive("aws_smithy_runtime_api=info".parse().expect("a valid directive"))
        // bollard logs request bodies at debug: a container's create body carries its env, secret values included.
        .add_directive("bollard=info".parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn parse_image(text: &str) -> Result<String, String> {
    ballast_specs::check_image(text).map(|()| text.to_string())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    Duration::parse(text)
}

/// A period or a timeout: at least 1 s (a resync of 0 s would spin, a header timeout of 0 s close everything).
fn parse_period(text: &str) -> Result<Duration, String> {
    let period = Duration::parse(text)?;
    if period.as_std() < StdDuration::from_secs(1) {
        return Err(format!("{text} is too short: at least 1s"));
    }
    Ok(period)
}

/// A listen address others can reach needs TLS (tokens travel in every request) and tokens (else anyone who
/// reaches it may change everything), unless `--insecure` says to go on anyway, loudly.
fn check_exposure(args: &Args, tls: bool, tokens: bool) -> anyhow::Result<()> {
    if args.listen.ip().is_loopback() || (tls && tokens) {
        return Ok(());
    }
    let missing = match (tls, tokens) {
        (false, false) => "TLS (--tls-cert, --tls-key) and tokens (--token-file)",
        (false, true) => "TLS (--tls-cert, --tls-key): tokens would cross the network in clear text",
        _ => "tokens (--token-file): anyone who reaches it could change everything",
    };
    if !args.http.insecure {
        return Err(anyhow!(
            "refusing to listen on {} without {missing}; listen on a loopback address (127.0.0.1, ::1), give \
             them, or pass --insecure",
            args.listen
        ));
    }
    tracing::warn!(
        listen = %args.listen,
        "INSECURE: --insecure given, the API listens on {} without {missing}",
        args.listen
    );
    Ok(())
}

/// Warns when a file holding a secret can be read or written by other users than its owner.
fn warn_if_shared(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the {what} {} is open to other users (mode {mode:04o}): `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
}

/// The connection cap, lowered to half of the open-file limit (raised to its hard limit first) when it does
/// not fit: the other half is for etcd, the hosts' SSH sessions and Docker.
fn fit_connections(wanted: usize) -> usize {
    let limit = api::serve::raise_file_limit();
    let fits = usize::try_from(limit / 2).unwrap_or(usize::MAX).max(1);
    if wanted > fits {
        tracing::warn!(
            wanted,
            open_files = limit,
            "--max-connections lowered to {fits}: half of this process's open-file limit"
        );
        return fits;
    }
    wanted
}

/// etcd leases are whole seconds, and a TTL under 2 s leaves no room to renew it.
fn parse_lease_ttl(text: &str) -> Result<Duration, String> {
    let ttl = Duration::parse(text)?;
    if ttl.as_std() < StdDuration::from_secs(2) {
        return Err(format!("{text} is too short: a lease lives at least 2s"));
    }
    Ok(ttl)
}

fn config_error(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

fn run_error(error: anyhow::Error) -> Failure {
    Failure { code: 1, error }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn help_lists_the_ha_flags() {
        let help = Args::command().render_help().to_string();
        assert!(help.contains("--lease-ttl <DUR>"), "{help}");
        assert!(help.contains("--drain-timeout <DUR>"), "{help}");
        assert!(help.contains("[default: 10s]"), "{help}");
    }

    #[test]
    fn periods_are_at_least_a_second() {
        assert!(parse_period("1s").is_ok());
        assert_eq!(parse_period("0s").unwrap_err(), "0s is too short: at least 1s");
        assert_eq!(parse_period("999ms").unwrap_err(), "999ms is too short: at least 1s");
        let refused = Args::try_parse_from(["ballastd", "--resync", "0s"]).unwrap_err().to_string();
        assert!(refused.contains("invalid value '0s' for '--resync <DUR>': 0s is too short"), "{refused}");
    }

    #[test]
    fn the_api_is_exposed_only_with_tls_and_tokens() {
        let args = |listen: &str, insecure: bool| {
            let mut argv = vec!["ballastd", "--listen", listen];
            if insecure {
                argv.push("--insecure");
            }
            Args::try_parse_from(argv).expect("args")
        };
        assert!(check_exposure(&args("127.0.0.1:7373", false), false, false).is_ok());
        assert!(check_exposure(&args("[::1]:7373", false), false, false).is_ok());
        assert!(check_exposure(&args("0.0.0.0:7373", false), true, true).is_ok());
        for (tls, tokens) in [(false, false), (true, false), (false, true)] {
            assert!(check_exposure(&args("10.0.0.5:7373", false), tls, tokens).is_err(), "{tls} {tokens}");
            assert!(check_exposure(&args("10.0.0.5:7373", true), tls, tokens).is_ok(), "{tls} {tokens}");
        }
    }

    #[test]
    fn lease_ttls_are_at_least_two_seconds() {
        assert!(parse_lease_ttl("2s").is_ok());
        assert_eq!(parse_lease_ttl("1500ms").unwrap_err(), "1500ms is too short: a lease lives at least 2s");
        assert!(parse_lease_ttl("soon").is_err());
    }
}
