//! Unit tests of the Secrets Manager cache, refresh, retries and fingerprints against a scripted fake, in paused time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;

/// What the fake answers to every `GetSecretValue`.
#[derive(Clone)]
enum Reply {
    Value { version: &'static str, json: String },
    Binary,
    NotFound,
    Throttled,
    Down,
    Denied,
}

struct Fake {
    reply: Mutex<Reply>,
    delay: Duration,
    calls: AtomicUsize,
}

impl Fake {
    fn new(reply: Reply) -> Arc<Self> {
        Arc::new(Fake { reply: Mutex::new(reply), delay: Duration::ZERO, calls: AtomicUsize::new(0) })
    }

    fn slow(reply: Reply, delay: Duration) -> Arc<Self> {
        Arc::new(Fake { reply: Mutex::new(reply), delay, calls: AtomicUsize::new(0) })
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl SecretsApi for Fake {
    async fn get_secret_value(&self, name: &str) -> Result<SecretValue, Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let reply = self.reply.lock().unwrap().clone();
        match reply {
            Reply::Value { version, json } => {
                Ok(SecretValue { version_id: Some(version.to_string()), string: Some(json) })
            }
            Reply::Binary => Ok(SecretValue { version_id: Some("v-bin".to_string()), string: None }),
            Reply::NotFound => {
                Err(Failure { error: AwsError::SecretNotFound(name.to_string()), transient: false })
            }
            Reply::Throttled => Err(Failure {
                error: AwsError::Throttled("ThrottlingException".to_string()),
                transient: true,
            }),
            Reply::Down => {
                Err(Failure { error: AwsError::Request("connection refused".to_string()), transient: true })
            }
            Reply::Denied => Err(Failure {
                error: AwsError::Request("AccessDeniedException".to_string()),
                transient: false,
            }),
        }
    }
}

const REFRESH: Duration = Duration::from_secs(300);
const SOURCE: &str = "aws-secretsmanager:data-lake/prod";

fn value(version: &'static str, json: &str) -> Reply {
    Reply::Value { version, json: json.to_string() }
}

fn manager(fake: &Arc<Fake>) -> SecretsManager {
    manager_with_key(fake, b"cluster-key")
}

fn manager_with_key(fake: &Arc<Fake>, key: &[u8]) -> SecretsManager {
    SecretsManager::with_api(fake.clone(), SecretsConfig { cluster_key: key.to_vec(), refresh: REFRESH })
        .unwrap()
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn resolves_the_listed_keys_in_order_and_stringifies_scalars() {
    let fake = Fake::new(value("v1", r#"{"DB_HOST":"db.internal","PORT":5432,"TLS":true,"UNUSED":"x"}"#));
    let secrets = manager(&fake);
    let resolved = secrets.resolve(SOURCE, &keys(&["TLS", "DB_HOST", "PORT"])).await.unwrap();
    let env: Vec<(&str, &str)> = resolved.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(env, [("TLS", "true"), ("DB_HOST", "db.internal"), ("PORT", "5432")]);
    assert_eq!(resolved.hmac.len(), 64);
    assert!(resolved.hmac.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[tokio::test(start_paused = true)]
async fn answers_from_the_cache_within_the_refresh_period_and_reads_again_after_it() {
    let fake = Fake::new(value("v1", r#"{"A":"one"}"#));
    let secrets = manager(&fake);
    let first = secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    fake.set(value("v2", r#"{"A":"two"}"#));
    tokio::time::advance(REFRESH - Duration::from_secs(1)).await;
    let cached = secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    assert_eq!(fake.calls(), 1);
    assert_eq!(cached, first);

    tokio::time::advance(Duration::from_secs(1)).await;
    let fresh = secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    assert_eq!(fake.calls(), 2);
    assert_eq!(fresh.env, [("A".to_string(), "two".to_string())]);
    assert_ne!(fresh.hmac, first.hmac);
}

#[tokio::test(start_paused = true)]
async fn invalidate_and_refresh_all_force_exactly_one_read() {
    let fake = Fake::new(value("v1", r#"{"A":"one"}"#));
    let secrets = manager(&fake);
    secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    fake.set(value("v2", r#"{"A":"two"}"#));

    secrets.invalidate("data-lake/prod");
    let after = secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    assert_eq!(fake.calls(), 2);
    assert_eq!(after.env[0].1, "two");

    secrets.invalidate("some/other-secret");
    secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    assert_eq!(fake.calls(), 2);

    secrets.refresh_all();
    secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_read() {
    let fake = Fake::slow(value("v1", r#"{"A":"one","B":"two"}"#), Duration::from_secs(1));
    let secrets = manager(&fake);
    let (key_a, key_b) = (keys(&["A"]), keys(&["B"]));
    let (a, b) = tokio::join!(secrets.resolve(SOURCE, &key_a), secrets.resolve(SOURCE, &key_b));
    assert_eq!(a.unwrap().env[0].1, "one");
    assert_eq!(b.unwrap().env[0].1, "two");
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_missing_key_names_the_key_and_never_a_value() {
    let fake = Fake::new(value("v1", r#"{"DB_HOST":"s3cr3t-host"}"#));
    let secrets = manager(&fake);
    let error = secrets.resolve(SOURCE, &keys(&["DB_HOST", "DB_PASSWORD"])).await.unwrap_err();
    assert!(
        matches!(&error, AwsError::MissingKey { secret, key } if secret == "data-lake/prod" && key == "DB_PASSWORD"),
        "{error:?}"
    );
    let text = format!("{error} {error:?}");
    assert!(!text.contains("s3cr3t-host"), "{text}");
    assert_eq!(error.to_string(), r#"secret "data-lake/prod" has no key "DB_PASSWORD""#);
}

#[tokio::test(start_paused = true)]
async fn a_secret_that_is_not_a_json_object_of_scalars_is_rejected() {
    for reply in [
        value("v1", "plain text s3cr3t"),
        value("v1", r#"["s3cr3t"]"#),
        value("v1", r#"{"A":{"nested":"s3cr3t"}}"#),
        value("v1", r#"{"A":null}"#),
        Reply::Binary,
    ] {
        let fake = Fake::new(reply);
        let error = manager(&fake).resolve(SOURCE, &keys(&["A"])).await.unwrap_err();
        assert!(matches!(&error, AwsError::NotJson(name) if name == "data-lake/prod"), "{error:?}");
        assert!(!format!("{error} {error:?}").contains("s3cr3t"));
        assert_eq!(fake.calls(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_secret_that_does_not_exist_is_reported_without_retries() {
    let fake = Fake::new(Reply::NotFound);
    let error = manager(&fake).resolve(SOURCE, &keys(&["A"])).await.unwrap_err();
    assert!(matches!(&error, AwsError::SecretNotFound(name) if name == "data-lake/prod"), "{error:?}");
    assert!(!error.is_retryable());
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_with_backoff_within_a_budget_then_reported() {
    let fake = Fake::new(Reply::Throttled);
    let secrets = manager(&fake);
    let start = Instant::now();
    let error = secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap_err();
    assert!(matches!(error, AwsError::Throttled(_)), "{error:?}");
    assert_eq!(fake.calls(), 3);
    // 200 ms, then 400 ms: the tries are spread out, never a hot loop.
    assert_eq!(start.elapsed(), Duration::from_millis(600));

    fake.set(value("v1", r#"{"A":"one"}"#));
    assert_eq!(secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap().env[0].1, "one");
    assert_eq!(fake.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_request_error_is_not_retried() {
    let fake = Fake::new(Reply::Denied);
    let error = manager(&fake).resolve(SOURCE, &keys(&["A"])).await.unwrap_err();
    assert!(matches!(error, AwsError::Request(_)), "{error:?}");
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_cached_value_is_served_while_aws_fails() {
    let fake = Fake::new(value("v1", r#"{"A":"one"}"#));
    let secrets = manager(&fake);
    let before = secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();

    fake.set(Reply::Down);
    tokio::time::advance(REFRESH).await;
    let during = secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    assert_eq!(during, before);
    assert_eq!(fake.calls(), 1 + 3);

    // AWS is not asked again on every resolve while it is down.
    tokio::time::advance(RETRY_AFTER_FAILURE - Duration::from_secs(1)).await;
    secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    assert_eq!(fake.calls(), 4);

    fake.set(Reply::Throttled);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap(), before);
    assert_eq!(fake.calls(), 7);

    fake.set(value("v2", r#"{"A":"two"}"#));
    tokio::time::advance(RETRY_AFTER_FAILURE + Duration::from_secs(1)).await;
    assert_eq!(secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap().env[0].1, "two");
}

#[tokio::test(start_paused = true)]
async fn a_deleted_secret_is_not_served_from_the_cache() {
    let fake = Fake::new(value("v1", r#"{"A":"one"}"#));
    let secrets = manager(&fake);
    secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    fake.set(Reply::NotFound);
    secrets.invalidate("data-lake/prod");
    let error = secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap_err();
    assert!(matches!(error, AwsError::SecretNotFound(_)), "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn the_fingerprint_follows_values_not_versions() {
    let fake = Fake::new(value("v1", r#"{"A":"one","B":"two"}"#));
    let secrets = manager(&fake);
    let ab = keys(&["A", "B"]);
    let first = secrets.resolve(SOURCE, &ab).await.unwrap();

    fake.set(value("v2", r#"{"A":"one","B":"two"}"#));
    secrets.refresh_all();
    assert_eq!(secrets.resolve(SOURCE, &ab).await.unwrap().hmac, first.hmac, "new version, same values");

    fake.set(value("v3", r#"{"A":"one","B":"two","C":"unlisted changed"}"#));
    secrets.refresh_all();
    assert_eq!(secrets.resolve(SOURCE, &ab).await.unwrap().hmac, first.hmac, "a key the role does not list");

    fake.set(value("v4", r#"{"A":"one","B":"three"}"#));
    secrets.refresh_all();
    assert_ne!(secrets.resolve(SOURCE, &ab).await.unwrap().hmac, first.hmac, "a value changed");

    // Pairs are length-prefixed: moving a character from one value into the next changes the fingerprint.
    fake.set(value("v5", r#"{"A":"onet","B":"wo"}"#));
    secrets.refresh_all();
    assert_ne!(secrets.resolve(SOURCE, &ab).await.unwrap().hmac, first.hmac);

    let other_cluster = manager_with_key(&Fake::new(value("v1", r#"{"A":"one","B":"two"}"#)), b"another-key");
    assert_ne!(other_cluster.resolve(SOURCE, &ab).await.unwrap().hmac, first.hmac, "another cluster key");
}

#[tokio::test(start_paused = true)]
async fn neither_the_fingerprint_nor_debug_output_reveals_a_value() {
    let value_text = "correct-horse-battery-staple";
    let fake = Fake::new(value("v1", &format!(r#"{{"DB_PASSWORD":"{value_text}"}}"#)));
    let secrets = manager(&fake);
    let resolved = secrets.resolve(SOURCE, &keys(&["DB_PASSWORD"])).await.unwrap();
    assert!(!resolved.hmac.contains(value_text));
    assert!(!resolved.hmac.contains(&hex::encode(value_text)));
    // Without the cluster key a plain hash of the value does not match either.
    assert!(!resolved.hmac.contains(&hex::encode(<Sha256 as sha2::Digest>::digest(value_text))));
    for text in [format!("{resolved:?}"), format!("{secrets:?}")] {
        assert!(!text.contains(value_text) && text.contains("[redacted]"), "{text}");
    }
    let config = SecretsConfig { cluster_key: b"k3y-bytes".to_vec(), refresh: REFRESH };
    assert!(!format!("{config:?}").contains("k3y-bytes"));
}

#[tokio::test(start_paused = true)]
async fn other_sources_and_empty_keys_are_refused() {
    let fake = Fake::new(value("v1", r#"{"A":"one"}"#));
    let secrets = manager(&fake);
    for source in ["vault:data-lake/prod", "aws-secretsmanager:"] {
        let error = secrets.resolve(source, &keys(&["A"])).await.unwrap_err();
        assert!(matches!(&error, AwsError::UnknownSource(s) if s == source), "{error:?}");
    }
    assert_eq!(fake.calls(), 0);
    let empty =
        SecretsManager::with_api(fake.clone(), SecretsConfig { cluster_key: Vec::new(), refresh: REFRESH });
    assert!(matches!(empty, Err(AwsError::NotConfigured(_))));
}

#[tokio::test(start_paused = true)]
async fn a_key_missing_from_an_older_copy_is_looked_for_in_a_new_read() {
    let fake = Fake::new(value("v1", r#"{"A":"one"}"#));
    let secrets = manager(&fake);
    secrets.resolve(SOURCE, &keys(&["A"])).await.unwrap();
    // The role gains key B, and B is added to the secret: no need to wait for the refresh period.
    fake.set(value("v2", r#"{"A":"one","B":"two"}"#));
    tokio::time::advance(MISSING_KEY_REREAD).await;
    let both = secrets.resolve(SOURCE, &keys(&["A", "B"])).await.unwrap();
    assert_eq!(both.env[1].1, "two");
    assert_eq!(fake.calls(), 2);

    // A key that is really missing does not make every resolve call AWS.
    for _ in 0..5 {
        let error = secrets.resolve(SOURCE, &keys(&["C"])).await.unwrap_err();
        assert!(matches!(error, AwsError::MissingKey { .. }), "{error:?}");
    }
    assert_eq!(fake.calls(), 2);
    tokio::time::advance(MISSING_KEY_REREAD).await;
    secrets.resolve(SOURCE, &keys(&["C"])).await.unwrap_err();
    assert_eq!(fake.calls(), 3);
}
