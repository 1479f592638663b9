//! `ballastd`: the operator binary. Flags, logging, the store (a given etcd cluster or an embedded one), the HTTP API.
//!
//! Readiness: once the API listens, `ballastd` logs `listening` with the bound address and, with `--ready-file PATH`,
//! writes the API's base URL (`http://ADDR`, one line) to PATH atomically (write, then rename). Scripts and tests
//! start it with `--listen 127.0.0.1:0 --ready-file F` and wait for F to appear.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when it cannot run (etcd unusable, port taken),
//! 2 for a configuration it refuses (bad flags, bad token file, non-loopback listen address without tokens).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{anyhow, Context};
use ballast_operator::access::ContainerAccess;
use ballast_operator::api::{self, AppState, Auth};
use ballast_operator::aws::{
    self, AwsSettings, EcrConfig, NoAws, RegistryCredentials, SecretSource, SecretsConfig,
};
use ballast_operator::etcd_local::EmbeddedEtcd;
use ballast_operator::hosts::{RealConnector, SshConfig};
use ballast_operator::reconcile::{self, Config};
use ballast_operator::runtime::{self, RuntimeConfig};
use ballast_operator::store::etcd::EtcdStore;
use ballast_operator::store::Store;
use ballast_specs::Duration;
use clap::{Parser, ValueEnum};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long the store may take to answer the startup check.
const STARTUP_CHECK: StdDuration = StdDuration::from_secs(20);

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
    /// Token file: one `NAME write|read TOKEN` a line, `#` starts a comment. Without it no token is asked for,
    /// and ballastd listens only on loopback addresses.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Period of the full resync of every unit (e.g. 30s, 5m).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
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
    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Once listening, write the API's base URL (http://ADDR) to this file.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
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
    if !auth.required() && !args.listen.ip().is_loopback() {
        return Err(config_error(anyhow!(
            "refusing to listen on {} without --token-file: without tokens ballastd listens only on loopback \
             addresses (127.0.0.1, ::1)",
            args.listen
        )));
    }
    tracing::info!(
        resync = %args.resync,
        ssh_key = ?args.ssh_key,
        known_hosts = ?args.known_hosts,
        tokens = auth.required(),
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
    let result = serve(&args, auth, &endpoints).await;
    if let Some(etcd) = embedded {
        match etcd.shutdown().await {
            Ok(()) => tracing::info!("embedded etcd stopped"),
            Err(e) => tracing::warn!(error = %e, "embedded etcd did not stop cleanly"),
        }
    }
    result.map_err(run_error)
}

/// Connects to the store and serves the API until SIGTERM or SIGINT.
async fn serve(args: &Args, auth: Auth, endpoints: &[String]) -> anyhow::Result<()> {
    let store = connect(endpoints).await?;
    let (secrets, registry) = aws_clients(args, store.as_ref()).await?;
    let connector = RealConnector {
        ssh: SshConfig { key_path: args.ssh_key.clone(), known_hosts: args.known_hosts.clone() },
    };
    let ctx = Arc::new(reconcile::Context::new(
        store.clone(),
        Arc::new(connector),
        secrets,
        registry,
        Config::default(),
    ));
    let listener =
        TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().context("cannot read the bound address")?;
    let base_url = format!("http://{address}");
    let stop = CancellationToken::new();
    let mut state = AppState::new(store, auth);
    state.plans = Some(ctx.clone());
    state.hosts = Some(Arc::new(ContainerAccess::new(ctx.clone(), stop.clone())));

    let reconciler = if args.no_reconcile {
        None
    } else {
        let config = RuntimeConfig { resync: args.resync.as_std(), ..RuntimeConfig::default() };
        Some(tokio::spawn(runtime::run(ctx, config, stop.clone())))
    };
    tracing::info!(address = %base_url, "listening");
    if let Some(path) = &args.ready_file {
        write_ready_file(path, &base_url)?;
    }
    let served = axum::serve(listener, api::router(state))
        .with_graceful_shutdown({
            let stop = stop.clone();
            async move {
                shutdown_signal().await;
                stop.cancel();
            }
        })
        .await
        .context("http server failed");
    stop.cancel();
    if let Some(reconciler) = reconciler {
        let _ = reconciler.await;
        tracing::info!("reconciler stopped");
    }
    served?;
    tracing::info!("http server stopped");
    Ok(())
}

/// Secrets Manager and ECR from the standard AWS configuration; without a region, no AWS (anonymous pulls,
/// roles with secrets report that secrets are not configured).
async fn aws_clients(
    args: &Args,
    store: &dyn Store,
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
async fn connect(endpoints: &[String]) -> anyhow::Result<Arc<dyn Store>> {
    let shown = endpoints.join(",");
    let store = EtcdStore::connect(endpoints).await.with_context(|| format!("cannot use etcd at {shown}"))?;
    match tokio::time::timeout(STARTUP_CHECK, store.snapshot()).await {
        Ok(Ok(_)) => Ok(Arc::new(store)),
        Ok(Err(err)) => Err(anyhow!(err).context(format!("cannot use etcd at {shown}"))),
        Err(_) => Err(anyhow!("cannot use etcd at {shown}: no answer within {}s", STARTUP_CHECK.as_secs())),
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

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
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

fn parse_duration(text: &str) -> Result<Duration, String> {
    Duration::parse(text)
}

fn config_error(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

fn run_error(error: anyhow::Error) -> Failure {
    Failure { code: 1, error }
}
