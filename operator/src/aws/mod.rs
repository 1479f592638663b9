//! AWS: secret values (Secrets Manager) and registry credentials (ECR), behind two narrow traits.
//!
//! The reconciler only sees [`SecretSource`] and [`RegistryCredentials`]; no AWS SDK type leaves this module.
//! [`from_env`] builds the real implementations, [`SecretsManager`] and [`EcrCredentials`], from the standard AWS configuration.

mod cache;
mod client;
mod ecr;
mod sdk_error;
mod secrets;

use std::fmt;

use async_trait::async_trait;

use crate::hosts::RegistryAuth;

pub use client::{from_env, Aws, AwsSettings, StaticCredentials};
pub use ecr::{EcrConfig, EcrCredentials};
pub use secrets::{SecretsConfig, SecretsManager, DEFAULT_SECRETS_REFRESH};

/// The values of a role's secret keys, ready to inject as env, and a keyed HMAC of them for the container label.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedSecrets {
    /// `(KEY, value)` in the order of the role's `secrets.keys`.
    pub env: Vec<(String, String)>,
    /// Hex HMAC-SHA256 of the values under the cluster key: reveals nothing, changes when a value changes.
    pub hmac: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("aws is not configured: {0}")]
    NotConfigured(String),
    #[error("secret {secret:?} has no key {key:?}")]
    MissingKey { secret: String, key: String },
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("secret {0:?} is not a JSON object of strings")]
    NotJson(String),
    #[error("aws throttled the request: {0}")]
    Throttled(String),
    #[error("aws request failed: {0}")]
    Request(String),
    #[error("unknown secret source {0:?} (expected aws-secretsmanager:NAME)")]
    UnknownSource(String),
}

impl AwsError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, AwsError::Throttled(_) | AwsError::Request(_))
    }

    /// A stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            AwsError::NotConfigured(_) => "not_configured",
            AwsError::MissingKey { .. } => "missing_key",
            AwsError::SecretNotFound(_) => "secret_not_found",
            AwsError::NotJson(_) => "not_json",
            AwsError::Throttled(_) => "throttled",
            AwsError::Request(_) => "request",
            AwsError::UnknownSource(_) => "unknown_source",
        }
    }
}

/// Where secret values come from (`secrets.source`).
#[async_trait]
pub trait SecretSource: Send + Sync + 'static {
    /// The values of `keys` in secret `source` (`aws-secretsmanager:NAME`); cached by the implementation.
    async fn resolve(&self, source: &str, keys: &[String]) -> Result<ResolvedSecrets, AwsError>;
    /// The next `resolve` of `source` reads it anew instead of answering from the cache (a role using it changed).
    fn invalidate(&self, _source: &str) {}
}

/// Registry credentials for an image pull.
#[async_trait]
pub trait RegistryCredentials: Send + Sync + 'static {
    /// Credentials for the registry of `image`, or `None` for an anonymous pull.
    async fn auth_for(&self, image: &str) -> Result<Option<RegistryAuth>, AwsError>;
    /// The registry refused the credentials: drop any cached ones for `image`'s registry.
    async fn invalidate(&self, image: &str);
}

/// No AWS: anonymous pulls, and roles with secrets cannot be resolved.
pub struct NoAws;

#[async_trait]
impl SecretSource for NoAws {
    async fn resolve(&self, source: &str, _keys: &[String]) -> Result<ResolvedSecrets, AwsError> {
        Err(AwsError::NotConfigured(format!("cannot read {source}: no secret source configured")))
    }
}

#[async_trait]
impl RegistryCredentials for NoAws {
    async fn auth_for(&self, _image: &str) -> Result<Option<RegistryAuth>, AwsError> {
        Ok(None)
    }

    async fn invalidate(&self, _image: &str) {}
}

impl fmt::Debug for ResolvedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ResolvedSecrets").field("keys", &keys).field("values", &"[redacted]").finish()
    }
}
