//! The AWS SDK configuration (standard chain, explicit overrides, timeouts) and the clients built from it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::Credentials;

use super::ecr::{EcrConfig, EcrCredentials, SdkEcr};
use super::secrets::{SdkSecrets, SecretsConfig, SecretsManager};
use super::AwsError;

/// Where the AWS clients point. `None` fields come from the standard AWS configuration
/// (`AWS_REGION`, `AWS_ENDPOINT_URL`, the credential chain); tests set them explicitly instead of touching the process env.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub credentials: Option<StaticCredentials>,
    /// Bound of one AWS call, connection included.
    pub operation_timeout: Duration,
    /// Bound of opening the connection.
    pub connect_timeout: Duration,
}

/// An access key pair used instead of the credential chain.
#[derive(Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The real AWS-backed sources, built by [`from_env`].
#[derive(Debug)]
pub struct Aws {
    pub secrets: SecretsManager,
    pub registry: EcrCredentials,
}

/// Builds the Secrets Manager and ECR sources from the standard AWS configuration, overridden by `settings`.
/// Fails when no region is configured. The SDK's own retries are off: [`SecretsManager`] and [`EcrCredentials`]
/// retry transient failures themselves, within a small budget.
pub async fn from_env(
    settings: &AwsSettings,
    secrets: SecretsConfig,
    ecr: EcrConfig,
) -> Result<Aws, AwsError> {
    let sdk = load(settings).await;
    if sdk.region().is_none() {
        return Err(AwsError::NotConfigured(
            "no aws region: set AWS_REGION or a region in the aws profile".to_string(),
        ));
    }
    let secrets =
        SecretsManager::with_api(Arc::new(SdkSecrets(aws_sdk_secretsmanager::Client::new(&sdk))), secrets)?;
    let registry = EcrCredentials::with_api(Arc::new(SdkEcr(aws_sdk_ecr::Client::new(&sdk))), ecr);
    Ok(Aws { secrets, registry })
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            endpoint_url: None,
            credentials: None,
            operation_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

async fn load(settings: &AwsSettings) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(settings.connect_timeout)
        .operation_timeout(settings.operation_timeout)
        .operation_attempt_timeout(settings.operation_timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::disabled());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if let Some(creds) = &settings.credentials {
        loader = loader.credentials_provider(Credentials::new(
            creds.access_key_id.clone(),
            creds.secret_access_key.clone(),
            None,
            None,
            "ballast",
        ));
    }
    loader.load().await
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_secret_key() {
        let settings = AwsSettings {
            credentials: Some(StaticCredentials {
                access_key_id: "AKIDEXAMPLE".to_string(),
                secret_access_key: "wJalrXUtnFEMI".to_string(),
            }),
            ..AwsSettings::default()
        };
        let text = format!("{settings:?}");
        assert!(text.contains("AKIDEXAMPLE") && !text.contains("wJalrXUtnFEMI"), "{text}");
    }
}
