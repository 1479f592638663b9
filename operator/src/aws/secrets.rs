//! Secret values from AWS Secrets Manager: cached per secret, refreshed after a period, fingerprinted with a keyed HMAC.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::time::Instant;

use super::cache::{with_retries, Failure, Slots};
use super::sdk_error::sdk_failure;
use super::{AwsError, ResolvedSecrets, SecretSource};

/// How long a secret read from AWS is used before it is read again (`ballastd --secrets-refresh`).
pub const DEFAULT_SECRETS_REFRESH: Duration = Duration::from_secs(300);

/// After AWS failed and the cached values were served, AWS is asked again after this long (or the refresh period, if shorter).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// A key missing from a copy at least this old makes `resolve` read the secret again at once.
const MISSING_KEY_REREAD: Duration = Duration::from_secs(10);

/// The `secrets.source` prefix this source serves.
const PREFIX: &str = "aws-secretsmanager:";

/// How [`SecretsManager`] fingerprints and caches secrets.
#[derive(Clone)]
pub struct SecretsConfig {
    /// The per-cluster HMAC key; labels carry `HMAC-SHA256(cluster_key, values)`, never the values. Must not be empty.
    pub cluster_key: Vec<u8>,
    /// How long a value read from AWS answers `resolve` before it is read again.
    pub refresh: Duration,
}

/// [`SecretSource`] backed by AWS Secrets Manager (`aws-secretsmanager:NAME`).
///
/// The secret string must be a JSON object; string values are used as they are, numbers and booleans as their JSON text.
/// Each secret is read at most once per refresh period (concurrent callers share one read), unless
/// [`SecretsManager::invalidate`] asks for a new read or a listed key is missing from a copy older than 10 s.
/// When AWS fails transiently and a value was read before, that value keeps being served (AWS is asked again
/// after 30 s); a secret found deleted or malformed is no longer served.
pub struct SecretsManager {
    api: Arc<dyn SecretsApi>,
    mac: Hmac<Sha256>,
    refresh: Duration,
    cache: Slots<Cached>,
}

/// The calls this module makes to Secrets Manager; the SDK in production, a scripted fake in the unit tests.
#[async_trait]
pub(crate) trait SecretsApi: Send + Sync + 'static {
    async fn get_secret_value(&self, name: &str) -> Result<SecretValue, Failure>;
}

/// What `GetSecretValue` answered.
pub(crate) struct SecretValue {
    pub version_id: Option<String>,
    /// `SecretString`; `None` when the secret holds binary data.
    pub string: Option<String>,
}

/// The Secrets Manager SDK client behind [`SecretsApi`].
pub(crate) struct SdkSecrets(pub aws_sdk_secretsmanager::Client);

/// Every key of a secret's JSON object; `None` for values that are not strings, numbers or booleans.
type Values = HashMap<String, Option<String>>;

/// One secret as last read.
struct Cached {
    version_id: Option<String>,
    values: Values,
    /// When it was read.
    read_at: Instant,
    /// When AWS is asked again.
    check_at: Instant,
}

impl SecretsManager {
    pub(crate) fn with_api(api: Arc<dyn SecretsApi>, config: SecretsConfig) -> Result<Self, AwsError> {
        if config.cluster_key.is_empty() {
            return Err(AwsError::NotConfigured("the cluster secret key is empty".to_string()));
        }
        let mac = Hmac::<Sha256>::new_from_slice(&config.cluster_key).map_err(|_| {
            AwsError::NotConfigured("the cluster secret key is not a valid hmac key".to_string())
        })?;
        Ok(SecretsManager { api, mac, refresh: config.refresh, cache: Slots::new() })
    }

    /// The next `resolve` of secret `name` reads it from AWS again (the old value stays as a fallback).
    pub fn invalidate(&self, name: &str) {
        self.cache.mark_stale(name);
    }

    /// Every secret is read from AWS again on its next `resolve`.
    pub fn refresh_all(&self) {
        self.cache.mark_all_stale();
    }

    /// Reads `name` unless the cached copy is still fresh, and picks `keys` from it. A key missing from a copy
    /// read a while ago is looked for in a new read: it may have been added together with the role's new key.
    async fn resolve_name(&self, name: &str, keys: &[String]) -> Result<ResolvedSecrets, AwsError> {
        let slot = self.cache.get(name);
        let mut state = slot.state.lock().await;
        let forced = slot.take_stale();
        let fresh = matches!(&*state, Some(cached) if !forced && Instant::now() < cached.check_at);
        if !fresh {
            self.read(name, &mut state).await?;
        }
        let picked = pick(&self.mac, name, state.as_ref(), keys);
        let reread = matches!(&picked, Err(AwsError::MissingKey { .. }))
            && state.as_ref().is_some_and(|cached| cached.read_at.elapsed() >= MISSING_KEY_REREAD);
        if !reread {
            return picked;
        }
        self.read(name, &mut state).await?;
        pick(&self.mac, name, state.as_ref(), keys)
    }

    /// Reads `name` from AWS into `state`; on a transient failure keeps (and reports nothing about) what `state` held.
    async fn read(&self, name: &str, state: &mut Option<Cached>) -> Result<(), AwsError> {
        let read = with_retries("GetSecretValue", || self.api.get_secret_value(name)).await;
        match read.and_then(|value| parse(name, value)) {
            Ok((version_id, values)) => {
                if state.as_ref().is_none_or(|old| old.version_id != version_id) {
                    tracing::debug!(secret = name, version = ?version_id, "read secret");
                }
                let now = Instant::now();
                *state = Some(Cached { version_id, values, read_at: now, check_at: now + self.refresh });
                Ok(())
            }
            Err(error) if error.is_retryable() && state.is_some() => {
                tracing::warn!(secret = name, %error, "secrets manager failed; using the values read before");
                if let Some(cached) = state.as_mut() {
                    cached.check_at = Instant::now() + self.refresh.min(RETRY_AFTER_FAILURE);
                }
                Ok(())
            }
            Err(error) => {
                if !error.is_retryable() {
                    // The secret is gone or unusable: do not keep serving what it held.
                    *state = None;
                }
                Err(error)
            }
        }
    }
}

/// The values of `keys` in secret `name` as cached, and their fingerprint.
fn pick(
    mac: &Hmac<Sha256>,
    name: &str,
    cached: Option<&Cached>,
    keys: &[String],
) -> Result<ResolvedSecrets, AwsError> {
    let Some(cached) = cached else {
        return Err(AwsError::Request(format!("secret {name:?} was not read")));
    };
    let mut env = Vec::with_capacity(keys.len());
    for key in keys {
        match cached.values.get(key) {
            Some(Some(value)) => env.push((key.clone(), value.clone())),
            Some(None) => return Err(AwsError::NotJson(name.to_string())),
            None => return Err(AwsError::MissingKey { secret: name.to_string(), key: key.clone() }),
        }
    }
    Ok(ResolvedSecrets { hmac: fingerprint(mac, &env), env })
}

#[async_trait]
impl SecretSource for SecretsManager {
    async fn resolve(&self, source: &str, keys: &[String]) -> Result<ResolvedSecrets, AwsError> {
        match source.strip_prefix(PREFIX) {
            Some(name) if !name.is_empty() => self.resolve_name(name, keys).await,
            _ => Err(AwsError::UnknownSource(source.to_string())),
        }
    }

    fn invalidate(&self, source: &str) {
        if let Some(name) = source.strip_prefix(PREFIX) {
            self.cache.mark_stale(name);
        }
    }
}

#[async_trait]
impl SecretsApi for SdkSecrets {
    async fn get_secret_value(&self, name: &str) -> Result<SecretValue, Failure> {
        let what = || format!("GetSecretValue({name})");
        match self.0.get_secret_value().secret_id(name).send().await {
            Ok(output) => Ok(SecretValue {
                version_id: output.version_id().map(str::to_string),
                string: output.secret_string().map(str::to_string),
            }),
            Err(err) => {
                if let Some(service) = err.as_service_error() {
                    if service.is_resource_not_found_exception() {
                        return Err(Failure {
                            error: AwsError::SecretNotFound(name.to_string()),
                            transient: false,
                        });
                    }
                }
                Err(sdk_failure(&what(), &err))
            }
        }
    }
}

/// Turns `GetSecretValue`'s answer into (version, values by key).
fn parse(name: &str, value: SecretValue) -> Result<(Option<String>, Values), AwsError> {
    let not_json = || AwsError::NotJson(name.to_string());
    let text = value.string.ok_or_else(not_json)?;
    let serde_json::Value::Object(object) = serde_json::from_str(&text).map_err(|_| not_json())? else {
        return Err(not_json());
    };
    let values = object
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                serde_json::Value::Null | serde_json::Value::Array(_) | serde_json::Value::Object(_) => None,
            };
            (key, text)
        })
        .collect();
    Ok((value.version_id, values))
}

/// Hex HMAC-SHA256 over the length-prefixed `(key, value)` pairs, in order: equal values give equal fingerprints,
/// and without the cluster key nothing about a value can be learned or guessed from it.
fn fingerprint(mac: &Hmac<Sha256>, env: &[(String, String)]) -> String {
    let mut mac = mac.clone();
    mac.update(b"ballast.secrets.v1\n");
    for (key, value) in env {
        for part in [key, value] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
    }
    hex::encode(mac.finalize().into_bytes())
}

impl fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("cluster_key", &"[redacted]")
            .field("refresh", &self.refresh)
            .finish()
    }
}

impl fmt::Debug for SecretsManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManager")
            .field("refresh", &self.refresh)
            .field("secrets", &self.cache.keys())
            .field("values", &"[redacted]")
            .finish()
    }
}

impl fmt::Debug for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("version_id", &self.version_id)
            .field("values", &"[redacted]")
            .field("read_at", &self.read_at)
            .field("check_at", &self.check_at)
            .finish()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("version_id", &self.version_id)
            .field("string", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests;
