//! Unit tests of the ECR token cache (expiry, expired-on-arrival tokens, invalidation, concurrency, retries), in paused time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;

/// `base64("AWS:123456789012-auth-token")`, the token moto hands out.
const MOTO_TOKEN: &str = "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu";
const IMAGE: &str = "211125575460.dkr.ecr.us-east-1.amazonaws.com/bioloupe/datalake:latest";
const HOST: &str = "211125575460.dkr.ecr.us-east-1.amazonaws.com";
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Clone)]
enum Reply {
    Token { token: &'static str, lifetime: Duration },
    Throttled,
    Down,
}

struct Fake {
    reply: Mutex<Reply>,
    delay: Duration,
    calls: AtomicUsize,
    regions: Mutex<Vec<Option<String>>>,
}

impl Fake {
    fn new(reply: Reply) -> Arc<Self> {
        Self::slow(reply, Duration::ZERO)
    }

    fn slow(reply: Reply, delay: Duration) -> Arc<Self> {
        Arc::new(Fake {
            reply: Mutex::new(reply),
            delay,
            calls: AtomicUsize::new(0),
            regions: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl EcrApi for Fake {
    async fn authorization_token(&self, region: Option<&str>) -> Result<EcrToken, Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.regions.lock().unwrap().push(region.map(str::to_string));
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let reply = self.reply.lock().unwrap().clone();
        match reply {
            Reply::Token { token, lifetime } => Ok(EcrToken { token: token.to_string(), lifetime }),
            Reply::Throttled => Err(Failure {
                error: AwsError::Throttled("ThrottlingException".to_string()),
                transient: true,
            }),
            Reply::Down => {
                Err(Failure { error: AwsError::Request("connection refused".to_string()), transient: true })
            }
        }
    }
}

fn token(lifetime: Duration) -> Reply {
    Reply::Token { token: MOTO_TOKEN, lifetime }
}

fn credentials(fake: &Arc<Fake>) -> EcrCredentials {
    EcrCredentials::with_api(
        fake.clone(),
        EcrConfig { extra_registries: vec!["10.211.0.1:5000".to_string()], ..EcrConfig::default() },
    )
}

#[test]
fn registry_hosts_and_ecr_regions_are_recognised() {
    assert_eq!(registry_host(IMAGE), Some(HOST));
    assert_eq!(registry_host("10.211.0.1:5000/app:v1"), Some("10.211.0.1:5000"));
    assert_eq!(registry_host("localhost/app"), Some("localhost"));
    assert_eq!(registry_host("library/busybox:latest"), None);
    assert_eq!(registry_host("busybox"), None);

    assert_eq!(ecr_host_region(HOST).as_deref(), Some("us-east-1"));
    assert_eq!(
        ecr_host_region("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com").as_deref(),
        Some("us-gov-west-1")
    );
    assert_eq!(
        ecr_host_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").as_deref(),
        Some("cn-north-1")
    );
    assert_eq!(ecr_host_region("12345.dkr.ecr.us-east-1.amazonaws.com"), None);
    assert_eq!(ecr_host_region("123456789012.s3.us-east-1.amazonaws.com"), None);
    assert_eq!(ecr_host_region("ghcr.io"), None);
}

#[test]
fn a_token_from_2015_has_no_lifetime_left() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let in_2015 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_420_070_400);
    assert_eq!(lifetime(Some(in_2015), now), Duration::ZERO);
    assert_eq!(lifetime(None, now), Duration::ZERO);
    assert_eq!(lifetime(Some(now + HOUR), now), HOUR);
}

#[tokio::test(start_paused = true)]
async fn other_registries_pull_anonymously_without_asking_aws() {
    let fake = Fake::new(token(12 * HOUR));
    let ecr = credentials(&fake);
    for image in ["busybox:latest", "ghcr.io/org/app:v1", "10.211.0.2:5000/app:v1", "localhost:5000/app"] {
        assert_eq!(ecr.auth_for(image).await.unwrap(), None, "{image}");
    }
    assert_eq!(fake.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_token_decodes_to_user_and_password_for_the_registry_host() {
    let fake = Fake::new(token(12 * HOUR));
    let ecr = credentials(&fake);
    let auth = ecr.auth_for(IMAGE).await.unwrap().unwrap();
    assert_eq!(
        auth,
        RegistryAuth {
            username: "AWS".to_string(),
            password: "123456789012-auth-token".to_string(),
            server: HOST.to_string()
        }
    );
    let local = ecr.auth_for("10.211.0.1:5000/datalake:v2").await.unwrap().unwrap();
    assert_eq!(local.server, "10.211.0.1:5000");
    assert_eq!(*fake.regions.lock().unwrap(), [Some("us-east-1".to_string()), None]);
    assert!(!format!("{ecr:?}").contains("auth-token"));
}

#[tokio::test(start_paused = true)]
async fn a_token_is_refreshed_shortly_before_it_expires_and_not_before() {
    let fake = Fake::new(token(12 * HOUR));
    let ecr = credentials(&fake);
    ecr.auth_for(IMAGE).await.unwrap();
    let refresh_at = 12 * HOUR - Duration::from_secs(300);
    tokio::time::advance(refresh_at - Duration::from_secs(1)).await;
    ecr.auth_for(IMAGE).await.unwrap();
    ecr.auth_for("211125575460.dkr.ecr.us-east-1.amazonaws.com/other:v1").await.unwrap();
    assert_eq!(fake.calls(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    ecr.auth_for(IMAGE).await.unwrap();
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_token_expired_on_arrival_is_asked_for_at_most_once_per_minimum_period() {
    let fake = Fake::new(token(Duration::ZERO));
    let ecr = credentials(&fake);
    for _ in 0..59 {
        ecr.auth_for(IMAGE).await.unwrap().unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(fake.calls(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    ecr.auth_for(IMAGE).await.unwrap();
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn invalidate_makes_exactly_one_new_request() {
    let fake = Fake::new(token(Duration::ZERO));
    let ecr = credentials(&fake);
    ecr.auth_for(IMAGE).await.unwrap();
    ecr.invalidate(IMAGE).await;
    ecr.auth_for(IMAGE).await.unwrap();
    ecr.auth_for(IMAGE).await.unwrap();
    assert_eq!(fake.calls(), 2);
    // Invalidating another registry, or an image that is not ECR, changes nothing here.
    ecr.invalidate("10.211.0.1:5000/app:v1").await;
    ecr.invalidate("busybox").await;
    ecr.auth_for(IMAGE).await.unwrap();
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_for_one_registry_make_one_request() {
    let fake = Fake::slow(token(12 * HOUR), Duration::from_secs(1));
    let ecr = credentials(&fake);
    let other = "211125575460.dkr.ecr.us-east-1.amazonaws.com/other:v1";
    let (a, b, c) = tokio::join!(ecr.auth_for(IMAGE), ecr.auth_for(other), ecr.auth_for(IMAGE));
    assert_eq!(a.unwrap(), b.unwrap());
    assert!(c.unwrap().is_some());
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_within_a_budget_then_reported() {
    let fake = Fake::new(Reply::Throttled);
    let ecr = credentials(&fake);
    let start = Instant::now();
    let error = ecr.auth_for(IMAGE).await.unwrap_err();
    assert!(matches!(error, AwsError::Throttled(_)), "{error:?}");
    assert_eq!(fake.calls(), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(600));
}

#[tokio::test(start_paused = true)]
async fn a_token_still_valid_is_used_while_aws_fails() {
    let fake = Fake::new(token(HOUR));
    let ecr = credentials(&fake);
    let before = ecr.auth_for(IMAGE).await.unwrap();
    fake.set(Reply::Down);
    tokio::time::advance(HOUR - Duration::from_secs(300)).await;
    assert_eq!(ecr.auth_for(IMAGE).await.unwrap(), before);
    assert_eq!(fake.calls(), 1 + 3);
    // Not asked again within the minimum period.
    ecr.auth_for(IMAGE).await.unwrap();
    assert_eq!(fake.calls(), 4);
    // Once the token has expired, the failure is reported.
    tokio::time::advance(Duration::from_secs(300)).await;
    assert!(matches!(ecr.auth_for(IMAGE).await, Err(AwsError::Request(_))));
}

#[tokio::test(start_paused = true)]
async fn a_malformed_token_is_a_readable_error() {
    for bad in ["not base64!", "bm8tY29sb24="] {
        let fake = Fake::new(Reply::Token { token: bad, lifetime: HOUR });
        let error = credentials(&fake).auth_for(IMAGE).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("aws request failed: ecr returned a malformed authorization token for {HOST}")
        );
    }
}
