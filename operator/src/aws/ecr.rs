//! Registry credentials for ECR images from `GetAuthorizationToken`, cached per registry until shortly before they expire.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use tokio::time::Instant;

use super::cache::{with_retries, Failure, Slots};
use super::sdk_error::sdk_failure;
use super::{AwsError, RegistryCredentials};
use crate::hosts::RegistryAuth;

/// Which registries are ECR and how their tokens are cached.
#[derive(Clone, Debug)]
pub struct EcrConfig {
    /// Registry hosts (`host[:port]`) treated as ECR besides `<account>.dkr.ecr.<region>.amazonaws.com`,
    /// asked for with the configured region (e.g. a local test registry `10.211.0.1:5000`).
    pub extra_registries: Vec<String>,
    /// A token is fetched again this long before it expires.
    pub refresh_early: Duration,
    /// A token is kept at least this long, even one that arrives already expired; AWS is asked at most once
    /// per this period per registry unless [`RegistryCredentials::invalidate`] was called.
    pub min_period: Duration,
}

/// [`RegistryCredentials`] for ECR: the registry host of an ECR image gets the user and password of an
/// authorization token; other registries pull anonymously. One token request per registry at a time.
pub struct EcrCredentials {
    api: Arc<dyn EcrApi>,
    extra: HashSet<String>,
    refresh_early: Duration,
    min_period: Duration,
    cache: Slots<Cached>,
}

/// The calls this module makes to ECR; the SDK in production, a scripted fake in the unit tests.
#[async_trait]
pub(crate) trait EcrApi: Send + Sync + 'static {
    /// `GetAuthorizationToken` in `region` (`None`: the configured region).
    async fn authorization_token(&self, region: Option<&str>) -> Result<EcrToken, Failure>;
}

/// An authorization token as ECR returned it.
pub(crate) struct EcrToken {
    /// base64 of `user:password`.
    pub token: String,
    /// How long it is valid from now on (zero when it arrived already expired).
    pub lifetime: Duration,
}

/// The ECR SDK client behind [`EcrApi`].
pub(crate) struct SdkEcr(pub aws_sdk_ecr::Client);

struct Cached {
    auth: RegistryAuth,
    /// When ECR is asked again.
    refresh_at: Instant,
    /// When the token stops working.
    expires_at: Instant,
}

impl Default for EcrConfig {
    fn default() -> Self {
        EcrConfig {
            extra_registries: Vec::new(),
            refresh_early: Duration::from_secs(300),
            min_period: Duration::from_secs(60),
        }
    }
}

impl EcrCredentials {
    pub(crate) fn with_api(api: Arc<dyn EcrApi>, config: EcrConfig) -> Self {
        EcrCredentials {
            api,
            extra: config.extra_registries.iter().map(|r| r.to_ascii_lowercase()).collect(),
            refresh_early: config.refresh_early,
            min_period: config.min_period,
            cache: Slots::new(),
        }
    }

    /// `Some(region)` when `host` is an ECR registry (`Some(None)`: an extra registry, use the configured region).
    fn ecr_region(&self, host: &str) -> Option<Option<String>> {
        let host = host.to_ascii_lowercase();
        if self.extra.contains(&host) {
            return Some(None);
        }
        ecr_host_region(&host).map(Some)
    }

    async fn fetch(&self, host: &str, region: Option<&str>) -> Result<(RegistryAuth, Duration), AwsError> {
        let token = with_retries("GetAuthorizationToken", || self.api.authorization_token(region)).await?;
        let malformed =
            || AwsError::Request(format!("ecr returned a malformed authorization token for {host}"));
        let decoded =
            base64::engine::general_purpose::STANDARD.decode(token.token.trim()).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (username, password) = decoded.split_once(':').ok_or_else(malformed)?;
        let auth = RegistryAuth {
            username: username.to_string(),
            password: password.to_string(),
            server: host.to_string(),
        };
        Ok((auth, token.lifetime))
    }
}

#[async_trait]
impl RegistryCredentials for EcrCredentials {
    async fn auth_for(&self, image: &str) -> Result<Option<RegistryAuth>, AwsError> {
        let Some(host) = registry_host(image) else { return Ok(None) };
        let Some(region) = self.ecr_region(host) else { return Ok(None) };
        let slot = self.cache.get(host);
        let mut state = slot.state.lock().await;
        let forced = slot.take_stale();
        if let Some(cached) = state.as_ref() {
            if !forced && Instant::now() < cached.refresh_at {
                return Ok(Some(cached.auth.clone()));
            }
        }
        match self.fetch(host, region.as_deref()).await {
            Ok((auth, lifetime)) => {
                let now = Instant::now();
                let keep = lifetime.saturating_sub(self.refresh_early).max(self.min_period);
                if lifetime < self.min_period {
                    tracing::warn!(registry = host, ?lifetime, next = ?keep, "ecr token is (almost) expired on arrival");
                } else {
                    tracing::debug!(registry = host, ?lifetime, next = ?keep, "fetched ecr token");
                }
                *state =
                    Some(Cached { auth: auth.clone(), refresh_at: now + keep, expires_at: now + lifetime });
                Ok(Some(auth))
            }
            Err(error) => match state.as_mut() {
                Some(cached) if error.is_retryable() && Instant::now() < cached.expires_at => {
                    tracing::warn!(registry = host, %error, "ecr failed; using the token fetched before");
                    cached.refresh_at = Instant::now() + self.min_period;
                    Ok(Some(cached.auth.clone()))
                }
                _ => Err(error),
            },
        }
    }

    async fn invalidate(&self, image: &str) {
        if let Some(host) = registry_host(image) {
            self.cache.mark_stale(host);
        }
    }
}

#[async_trait]
impl EcrApi for SdkEcr {
    async fn authorization_token(&self, region: Option<&str>) -> Result<EcrToken, Failure> {
        let mut request = self.0.get_authorization_token().customize();
        if let Some(region) = region {
            request = request.config_override(
                aws_sdk_ecr::config::Builder::default().region(aws_config::Region::new(region.to_string())),
            );
        }
        let what = format!("GetAuthorizationToken({})", region.unwrap_or("default region"));
        let output = request.send().await.map_err(|err| sdk_failure(&what, &err))?;
        let data = output.authorization_data().first();
        let Some(token) = data.and_then(|d| d.authorization_token()) else {
            let error = AwsError::Request(format!("{what}: the answer holds no authorization token"));
            return Err(Failure { error, transient: false });
        };
        let expires_at = data.and_then(|d| d.expires_at()).and_then(|t| SystemTime::try_from(*t).ok());
        Ok(EcrToken { token: token.to_string(), lifetime: lifetime(expires_at, SystemTime::now()) })
    }
}

/// The registry host of an image reference (`host[:port]` before the first `/`), or `None` for Docker Hub.
fn registry_host(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// The region of an ECR registry host `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]` (lowercase).
fn ecr_host_region(host: &str) -> Option<String> {
    let rest = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let (account, rest) = rest.split_once('.')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let region = rest.strip_prefix("dkr.ecr.").or_else(|| rest.strip_prefix("dkr.ecr-fips."))?;
    let valid = !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then(|| region.to_string())
}

/// How long a token expiring at `expires_at` is still valid at `now`; zero when unknown or past.
fn lifetime(expires_at: Option<SystemTime>, now: SystemTime) -> Duration {
    expires_at.and_then(|at| at.duration_since(now).ok()).unwrap_or(Duration::ZERO)
}

impl fmt::Debug for EcrCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrCredentials")
            .field("extra_registries", &self.extra)
            .field("registries", &self.cache.keys())
            .field("tokens", &"[redacted]")
            .finish()
    }
}

impl fmt::Debug for EcrToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrToken").field("token", &"[redacted]").field("lifetime", &self.lifetime).finish()
    }
}

impl fmt::Debug for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("auth", &self.auth)
            .field("refresh_at", &self.refresh_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests;
