//! The AWS SDK configuration (standard chain, explicit overrides, timeouts) and the translation of SDK errors.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::config::Credentials;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use super::cache::Failure;
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

/// Error codes AWS services use for "slow down".
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
];

/// Translates an SDK error of call `what` into a [`Failure`]: throttling, service errors (5xx transient),
/// connection failures (transient) and timeouts (not retried: the time is already spent).
pub(crate) fn sdk_failure<E>(what: &str, err: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + Error + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = err.code().unwrap_or("unknown error");
            let message = err.message().map(|m| format!(": {m}")).unwrap_or_default();
            let text = format!("{what}: {code} (http {status}){message}");
            if status == 429 || THROTTLING_CODES.contains(&code) {
                Failure { error: AwsError::Throttled(text), transient: true }
            } else {
                Failure { error: AwsError::Request(text), transient: status >= 500 }
            }
        }
        SdkError::TimeoutError(_) => Failure {
            error: AwsError::Request(format!("{what}: no answer in time: {}", chain(err))),
            transient: false,
        },
        SdkError::DispatchFailure(dispatch) => {
            let transient = !dispatch.is_timeout() && !dispatch.is_user();
            Failure { error: AwsError::Request(format!("{what}: {}", chain(err))), transient }
        }
        SdkError::ResponseError(_) => {
            Failure { error: AwsError::Request(format!("{what}: {}", chain(err))), transient: true }
        }
        _ => Failure { error: AwsError::Request(format!("{what}: {}", chain(err))), transient: false },
    }
}

/// `err` and its sources, joined with `: `, skipping a source whose text its parent already shows.
fn chain(err: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
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

    #[derive(Debug)]
    struct Outer(Inner);
    #[derive(Debug)]
    struct Inner;

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "dispatch failure")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }
    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "connection refused")
        }
    }
    impl Error for Inner {}

    #[test]
    fn chain_shows_every_cause_once() {
        assert_eq!(chain(&Outer(Inner)), "dispatch failure: connection refused");
    }

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
