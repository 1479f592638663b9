//! The operator's AWS sources against a real moto server: Secrets Manager values, rotation, errors, ECR tokens,
//! and a broken endpoint failing readably and quickly.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use ballast_operator::aws::{
    from_env, Aws, AwsError, AwsSettings, EcrConfig, RegistryCredentials, SecretSource, SecretsConfig,
};
use ballast_operator::hosts::RegistryAuth;
use ballast_tests::moto::TestMoto;
use ballast_tests::wait;

const CLUSTER_KEY: &[u8] = b"test-cluster-key";
const SOURCE: &str = "aws-secretsmanager:data-lake/prod";
const WAIT: Duration = Duration::from_secs(20);

async fn aws(settings: &AwsSettings, refresh: Duration) -> Aws {
    let secrets = SecretsConfig { cluster_key: CLUSTER_KEY.to_vec(), refresh };
    let ecr = EcrConfig { extra_registries: vec!["10.211.0.1:5000".to_string()], ..EcrConfig::default() };
    from_env(settings, secrets, ecr).await.unwrap()
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn a_secret_is_resolved_and_a_rotation_is_seen_after_the_refresh_period() {
    let moto = TestMoto::start().await.unwrap();
    moto.create_secret("data-lake/prod", r#"{"DB_HOST":"db.internal","DB_PASSWORD":"first","PORT":5432}"#)
        .await
        .unwrap();
    let refresh = Duration::from_millis(500);
    let aws = aws(&moto.settings(), refresh).await;
    let role_keys = keys(&["DB_PASSWORD", "DB_HOST", "PORT"]);

    let first = aws.secrets.resolve(SOURCE, &role_keys).await.unwrap();
    assert_eq!(first.env, env(&[("DB_PASSWORD", "first"), ("DB_HOST", "db.internal"), ("PORT", "5432")]));
    assert!(!first.hmac.contains("first"));

    moto.put_secret_value(
        "data-lake/prod",
        r#"{"DB_HOST":"db.internal","DB_PASSWORD":"second","PORT":5432}"#,
    )
    .await
    .unwrap();
    let put_at = Instant::now();
    let rotated = wait::until(WAIT, "the new secret value", || async {
        let resolved = aws.secrets.resolve(SOURCE, &role_keys).await.unwrap();
        (resolved.env[0].1 == "second").then_some(resolved)
    })
    .await
    .unwrap();
    let seen_after = put_at.elapsed();
    assert!(seen_after <= refresh + Duration::from_secs(2), "the new value took {seen_after:?}");
    assert_eq!(rotated.env, env(&[("DB_PASSWORD", "second"), ("DB_HOST", "db.internal"), ("PORT", "5432")]));
    assert_ne!(rotated.hmac, first.hmac);
    eprintln!("rotation seen {seen_after:?} after the put (refresh period {refresh:?})");
}

#[tokio::test]
async fn a_change_to_a_key_the_role_does_not_list_keeps_its_fingerprint() {
    let moto = TestMoto::start().await.unwrap();
    moto.create_secret("shared", r#"{"A":"one","OTHER":"x"}"#).await.unwrap();
    let aws = aws(&moto.settings(), Duration::from_secs(300)).await;
    let source = "aws-secretsmanager:shared";

    let before = aws.secrets.resolve(source, &keys(&["A"])).await.unwrap();
    let version = moto.put_secret_value("shared", r#"{"A":"one","OTHER":"y"}"#).await.unwrap();
    aws.secrets.invalidate("shared");
    // A role that lists OTHER proves the secret was read again ...
    let both = aws.secrets.resolve(source, &keys(&["A", "OTHER"])).await.unwrap();
    assert_eq!(both.env, env(&[("A", "one"), ("OTHER", "y")]));
    // ... and the role that lists only A keeps its fingerprint: its containers are not rolled.
    let after = aws.secrets.resolve(source, &keys(&["A"])).await.unwrap();
    assert_eq!(after, before, "new version {version}, same values for the role's keys");
}

#[tokio::test]
async fn missing_keys_unknown_secrets_and_non_json_secrets_are_clear_errors() {
    let moto = TestMoto::start().await.unwrap();
    moto.create_secret("app/prod", r#"{"DB_HOST":"hidden-value"}"#).await.unwrap();
    moto.create_secret("app/plain", "just-a-string").await.unwrap();
    let aws = aws(&moto.settings(), Duration::from_secs(300)).await;

    let missing =
        aws.secrets.resolve("aws-secretsmanager:app/prod", &keys(&["DB_HOST", "NOPE"])).await.unwrap_err();
    assert!(matches!(&missing, AwsError::MissingKey { key, .. } if key == "NOPE"), "{missing:?}");
    assert_eq!(missing.to_string(), r#"secret "app/prod" has no key "NOPE""#);
    assert!(!format!("{missing} {missing:?}").contains("hidden-value"));

    let started = Instant::now();
    let not_found = aws.secrets.resolve("aws-secretsmanager:app/absent", &keys(&["A"])).await.unwrap_err();
    assert!(matches!(&not_found, AwsError::SecretNotFound(name) if name == "app/absent"), "{not_found:?}");
    assert_eq!(not_found.to_string(), r#"secret "app/absent" not found"#);
    assert!(started.elapsed() < Duration::from_secs(2), "not found is not retried: {:?}", started.elapsed());

    let plain = aws.secrets.resolve("aws-secretsmanager:app/plain", &keys(&["A"])).await.unwrap_err();
    assert!(matches!(&plain, AwsError::NotJson(name) if name == "app/plain"), "{plain:?}");
    assert!(!plain.to_string().contains("just-a-string"));
}

#[tokio::test]
async fn ecr_tokens_decode_to_moto_credentials_for_the_registry() {
    let moto = TestMoto::start().await.unwrap();
    let aws = aws(&moto.settings(), Duration::from_secs(300)).await;

    let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let auth = aws.registry.auth_for(&format!("{host}/bioloupe/datalake:latest")).await.unwrap();
    let expected = RegistryAuth {
        username: "AWS".into(),
        password: "123456789012-auth-token".into(),
        server: host.into(),
    };
    assert_eq!(auth, Some(expected));

    // moto's token expired in 2015: it is still used (the registry decides), and served from the cache.
    let again = aws.registry.auth_for(&format!("{host}/other:v1")).await.unwrap();
    assert_eq!(again.map(|a| a.password), Some("123456789012-auth-token".to_string()));

    let local = aws.registry.auth_for("10.211.0.1:5000/datalake:v2").await.unwrap().unwrap();
    assert_eq!((local.username.as_str(), local.server.as_str()), ("AWS", "10.211.0.1:5000"));
    assert_eq!(aws.registry.auth_for("busybox:latest").await.unwrap(), None);
    assert!(!format!("{:?}", aws.registry).contains("auth-token"));
}

#[tokio::test]
async fn a_closed_endpoint_fails_readably_within_seconds() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let settings =
        AwsSettings { endpoint_url: Some(format!("http://127.0.0.1:{port}")), ..moto_less_settings() };
    let aws = aws(&settings, Duration::from_secs(300)).await;

    let started = Instant::now();
    let error = aws.secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("closed endpoint, secrets: {took:?}: {error}");
    assert!(matches!(error, AwsError::Request(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("GetSecretValue(data-lake/prod)") && text.contains("onnection refused"), "{text}");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    let started = Instant::now();
    let error =
        aws.registry.auth_for("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1").await.unwrap_err();
    let took = started.elapsed();
    eprintln!("closed endpoint, ecr: {took:?}: {error}");
    assert!(matches!(error, AwsError::Request(_)), "{error:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_cut_off_by_the_operation_timeout() {
    // Accepts connections (the kernel's backlog does) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let settings = AwsSettings {
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        operation_timeout: Duration::from_secs(2),
        ..moto_less_settings()
    };
    let aws = aws(&settings, Duration::from_secs(300)).await;

    let started = Instant::now();
    let error = aws.secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("silent endpoint: {took:?}: {error}");
    assert!(matches!(error, AwsError::Request(_)), "{error:?}");
    assert!(error.to_string().contains("no answer in time"), "{error}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(4), "took {took:?}");
    drop(listener);
}

/// Settings with test credentials and region, for endpoints that are not moto.
fn moto_less_settings() -> AwsSettings {
    AwsSettings {
        region: Some("us-east-1".to_string()),
        credentials: Some(ballast_operator::aws::StaticCredentials {
            access_key_id: "testing".to_string(),
            secret_access_key: "testing".to_string(),
        }),
        ..AwsSettings::default()
    }
}
