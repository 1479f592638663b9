//! The translation of AWS SDK errors into [`AwsError`]s, and whether a retry may help.

use std::error::Error;

use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use super::cache::Failure;
use super::AwsError;

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

#[cfg(test)]
mod tests {
    use std::fmt;

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
}
