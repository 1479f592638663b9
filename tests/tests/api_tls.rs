//! The API over TLS, end to end: the real `ballastd` with `--tls-cert`/`--tls-key` (a CA and a server
//! certificate made here with rcgen) and the real `ballast` CLI, which trusts the CA it is given (`--ca`,
//! `BALLAST_CA`) and refuses the server otherwise, in one line. And what ballastd refuses to start with: a
//! non-loopback address without TLS and tokens (unless `--insecure`, which it logs), TLS files it cannot use.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use ballast_tests::ballastd::{ballast_command, datalake_dir, run, Ballastd, Options};
use ballast_tests::raw_http::address;
use ballast_tests::TestEtcd;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;

const TOKENS: &str = "alice write alice-secret-token\n";
const TOKEN: &str = "alice-secret-token";

/// A CA, a server certificate it signed (for `localhost` and 127.0.0.1) with its key, and a second CA that
/// signed nothing here.
struct Pki {
    _dir: TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// A key that is not the certificate's.
    wrong_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca")
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_issuer = ca("ballast test CA");
    let other = ca("somebody else's CA");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    params.distinguished_name.push(DnType::CommonName, "ballastd");
    let cert = params.signed_by(&key, &ca_issuer).expect("server cert");
    let path = |name: &str| dir.path().join(name);
    let write = |name: &str, text: String| {
        std::fs::write(path(name), text).expect("write pem");
        private(&path(name));
        path(name)
    };
    Pki {
        ca: write("ca.pem", ca_issuer.pem()),
        other_ca: write("other-ca.pem", other.pem()),
        cert: write("cert.pem", cert.pem()),
        key: write("key.pem", key.serialize_pem()),
        wrong_key: write("wrong-key.pem", KeyPair::generate().expect("key").serialize_pem()),
        _dir: dir,
    }
}

fn private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn tls_args(pki: &Pki) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        pki.cert.display().to_string(),
        "--tls-key".into(),
        pki.key.display().to_string(),
    ]
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `ballast` against `url` with the write token, and `env` on top.
fn ballast(url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = ballast_command();
    command.env("BALLAST_SERVER", url).env("BALLAST_TOKEN", TOKEN).env_remove("BALLAST_CA");
    for (key, value) in env {
        command.env(key, value);
    }
    run(&mut command, args)
}

#[tokio::test]
async fn the_cli_trusts_the_ca_it_is_given_and_no_other() {
    let pki = pki();
    let etcd = TestEtcd::start().await.expect("etcd");
    let mut args = tls_args(&pki);
    args.extend(["--no-reconcile", "--header-timeout", "2s"].map(String::from));
    let options =
        Options { etcd: etcd.endpoints(), tokens: Some(TOKENS.to_string()), args, ..Options::default() };
    let ballastd = Ballastd::start_with(options).await.expect("ballastd");
    let url = ballastd.url().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = pki.ca.display().to_string();

    let applied = ballast(&url, &[], &["--ca", &ca, "apply", "-f", &datalake_dir().display().to_string()]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    let got = ballast(&url, &[("BALLAST_CA", &ca)], &["get", "roles", "job", "-o", "json"]);
    assert_eq!(got.status.code(), Some(0), "{}", stderr(&got));
    // The certificate's other name, and the loopback name the Host check takes.
    let by_name = url.replace("127.0.0.1", "localhost");
    let got = ballast(&by_name, &[("BALLAST_CA", &ca)], &["status"]);
    assert_eq!(got.status.code(), Some(0), "{}", stderr(&got));

    // No CA (the system's roots do not know it) or another CA: refused, in one line, exit 3.
    let refused = format!(
        "error: cannot trust ballastd at {url}: its certificate is not signed by a trusted authority: give the CA \
         certificate that signed it with --ca or BALLAST_CA\n"
    );
    let none = ballast(&url, &[], &["get", "roles"]);
    assert_eq!((none.status.code(), stderr(&none)), (Some(3), refused.clone()));
    let other = ballast(&url, &[], &["--ca", &pki.other_ca.display().to_string(), "get", "roles"]);
    assert_eq!((other.status.code(), stderr(&other)), (Some(3), refused));
    // A CA file that is not one.
    let bad = ballast(&url, &[], &["--ca", &pki.key.display().to_string(), "get", "roles"]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("holds no certificate"), "{}", stderr(&bad));
    // Plain HTTP to the TLS port gets no answer.
    let plain = ballast(&url.replace("https://", "http://"), &[], &["get", "roles"]);
    assert_eq!(plain.status.code(), Some(3), "{}", stderr(&plain));
    for out in [&none, &plain, &bad] {
        assert!(!stderr(out).contains("panicked") && stderr(out).lines().count() == 1, "{}", stderr(out));
    }

    // A client that connects and never starts its handshake is closed after --header-timeout.
    let mut idle = tokio::net::TcpStream::connect(address(&url)).await.expect("connect");
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut byte)).await;
    let held = started.elapsed();
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(held >= Duration::from_millis(1500) && held < Duration::from_secs(6), "closed after {held:?}");
}

#[tokio::test]
async fn ballastd_exposes_the_api_only_with_tls_and_tokens() {
    let pki = pki();
    let cases = [
        (vec![], None, "without TLS (--tls-cert, --tls-key) and tokens (--token-file)"),
        (
            vec![],
            Some(TOKENS),
            "without TLS (--tls-cert, --tls-key): tokens would cross the network in clear text",
        ),
        (
            tls_args(&pki),
            None,
            "without tokens (--token-file): anyone who reaches it could change everything",
        ),
    ];
    for (args, tokens, message) in cases {
        let options = Options {
            etcd: vec!["http://127.0.0.1:9".to_string()],
            listen: Some("0.0.0.0:0".to_string()),
            tokens: tokens.map(str::to_string),
            args,
            ..Options::default()
        };
        let (status, log) = Ballastd::run_to_exit(options).expect("run");
        assert_eq!(status.code(), Some(2), "{log}");
        assert!(log.contains(&format!("refusing to listen on 0.0.0.0:0 {message}")), "{log}");
    }

    let etcd = TestEtcd::start().await.expect("etcd");
    // TLS and tokens: it listens everywhere, and its ready URL is one this machine reaches.
    let mut args = tls_args(&pki);
    args.push("--no-reconcile".to_string());
    let options = Options {
        etcd: etcd.endpoints(),
        listen: Some("0.0.0.0:0".to_string()),
        tokens: Some(TOKENS.to_string()),
        args,
        ..Options::default()
    };
    let exposed = Ballastd::start_with(options).await.expect("ballastd with TLS and tokens");
    assert!(exposed.url().starts_with("https://127.0.0.1:"), "{}", exposed.url());
    let got = ballast(exposed.url(), &[("BALLAST_CA", &pki.ca.display().to_string())], &["get", "roles"]);
    assert_eq!(got.status.code(), Some(0), "{}", stderr(&got));
    assert!(!exposed.log().contains("INSECURE"), "{}", exposed.log());

    // --insecure: it starts, and says so loudly.
    let options = Options {
        etcd: etcd.endpoints(),
        listen: Some("0.0.0.0:0".to_string()),
        args: vec!["--insecure".to_string(), "--no-reconcile".to_string()],
        ..Options::default()
    };
    let insecure = Ballastd::start_with(options).await.expect("ballastd --insecure");
    let log = insecure.log();
    assert!(
        log.contains("WARN")
            && log.contains("INSECURE: --insecure given, the API listens on 0.0.0.0:0 without TLS"),
        "{log}"
    );
    let got = insecure.ballast(&["get", "roles"]);
    assert_eq!(got.status.code(), Some(0), "{}", stderr(&got));
}

#[tokio::test]
async fn ballastd_refuses_tls_files_it_cannot_use() {
    let pki = pki();
    let missing = pki.ca.with_file_name("missing.pem");
    let show = |p: &Path| p.display().to_string();
    let cases = [
        (vec!["--tls-cert".to_string(), show(&pki.cert)], "--tls-key <PATH>".to_string()),
        (
            vec!["--tls-cert".into(), show(&pki.cert), "--tls-key".into(), show(&missing)],
            format!("cannot read the TLS key {}", missing.display()),
        ),
        (
            vec!["--tls-cert".into(), show(&pki.key), "--tls-key".into(), show(&pki.key)],
            format!("the TLS certificate file {} holds no certificate", pki.key.display()),
        ),
        (
            vec!["--tls-cert".into(), show(&pki.cert), "--tls-key".into(), show(&pki.wrong_key)],
            format!(
                "the TLS certificate {} and key {} cannot be used together",
                pki.cert.display(),
                pki.wrong_key.display()
            ),
        ),
    ];
    for (args, message) in cases {
        let options = Options { etcd: vec!["http://127.0.0.1:9".to_string()], args, ..Options::default() };
        let (status, log) = Ballastd::run_to_exit(options).expect("run");
        assert_eq!(status.code(), Some(2), "{log}");
        assert!(log.contains(&message), "{message:?} not in {log}");
    }
}
