//! Bearer-token access: the token file (`NAME write|read TOKEN` a line) and the check made on every API call.
//!
//! Without a token file every call is allowed and recorded as `anonymous`. With one, every call but `GET /up`
//! needs a known token; mutating calls (any method but GET and HEAD) need a `write` token, and so do container
//! logs and exec ([`require_write_token`]): container output may hold secrets.
//! Tokens are compared in constant time (SHA-256 of both sides, compared without early exit).

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::AppState;
use crate::store::Actor;

/// The actor recorded for calls made without a token file.
pub const ANONYMOUS: &str = "anonymous";

/// Who may call the API.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    /// `None`: no token file, every call allowed as `anonymous`.
    tokens: Option<Vec<Token>>,
}

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// One line of the token file. `Debug` does not show the secret.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub access: Access,
    digest: [u8; 32],
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path} line {line}: {message}")]
    Line { path: String, line: usize, message: String },
    #[error("token file {path} has no tokens")]
    Empty { path: String },
}

impl Auth {
    /// No token file: everything allowed, as `anonymous`.
    pub fn open() -> Auth {
        Auth { tokens: None }
    }

    /// Reads and checks a token file.
    pub fn from_file(path: &Path) -> Result<Auth, TokenFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: shown.clone(), source })?;
        Auth::parse(&text, &shown)
    }

    /// Parses token file text; `path` only labels errors.
    pub fn parse(text: &str, path: &str) -> Result<Auth, TokenFileError> {
        let mut tokens: Vec<Token> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let fail = |message: String| TokenFileError::Line { path: path.to_string(), line, message };
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [name, access, secret] = fields[..] else {
                return Err(fail(format!(
                    "expected `NAME write|read TOKEN`, found {} field(s)",
                    fields.len()
                )));
            };
            let access = match access {
                "write" => Access::Write,
                "read" => Access::Read,
                other => return Err(fail(format!("access must be `write` or `read`, not {other:?}"))),
            };
            if secret.len() < 8 {
                return Err(fail("the token must be at least 8 characters long".to_string()));
            }
            let digest = digest(secret);
            if tokens.iter().any(|t| t.name == name) {
                return Err(fail(format!("name {name:?} is used twice")));
            }
            if tokens.iter().any(|t| t.digest == digest) {
                return Err(fail("this token is already given to another name".to_string()));
            }
            tokens.push(Token { name: name.to_string(), access, digest });
        }
        if tokens.is_empty() {
            return Err(TokenFileError::Empty { path: path.to_string() });
        }
        Ok(Auth { tokens: Some(tokens) })
    }

    /// True when calls need a token.
    pub fn required(&self) -> bool {
        self.tokens.is_some()
    }

    /// The actor for a call with this `Authorization` header value, if it may make a call of `access`.
    pub fn check(&self, authorization: Option<&str>, access: Access) -> Result<Actor, ApiError> {
        let Some(tokens) = &self.tokens else {
            return Ok(Actor(ANONYMOUS.to_string()));
        };
        let presented = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".to_string()))?;
        let presented = digest(presented);
        // Look at every token, whatever matches, so timing does not tell which one did.
        let mut found: Option<&Token> = None;
        for token in tokens {
            if constant_time_eq(&token.digest, &presented) {
                found = Some(token);
            }
        }
        let token = found.ok_or_else(|| ApiError::Unauthorized("unknown token".to_string()))?;
        if access == Access::Write && token.access == Access::Read {
            return Err(ApiError::Forbidden(format!(
                "token {:?} is read-only and cannot change anything",
                token.name
            )));
        }
        Ok(Actor(token.name.clone()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// Middleware: checks the token, then hands the `Actor` to the handler as a request extension.
pub async fn require_token(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let access = match *request.method() {
        Method::GET | Method::HEAD => Access::Read,
        _ => Access::Write,
    };
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match state.auth.check(authorization, access) {
        Ok(actor) => {
            request.extensions_mut().insert(actor);
            next.run(request).await
        }
        Err(err) => err.into_response(),
    }
}

/// Middleware for what can show secrets whatever the method (container logs, exec): a `write` token.
pub async fn require_write_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match state.auth.check(authorization, Access::Write) {
        Ok(actor) => {
            request.extensions_mut().insert(actor);
            next.run(request).await
        }
        Err(ApiError::Forbidden(_)) => ApiError::Forbidden(
            "container logs and exec need a write token (container output may hold secrets)".to_string(),
        )
        .into_response(),
        Err(err) => err.into_response(),
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str =
        "# ops tokens\n\nalice write s3cret-alice-token\nci read ci-read-only-token # dashboards\n";

    #[test]
    fn parses_names_and_access() {
        let auth = Auth::parse(FILE, "tokens").unwrap();
        assert!(auth.required());
        let alice = auth.check(Some("Bearer s3cret-alice-token"), Access::Write).unwrap();
        assert_eq!(alice, Actor("alice".to_string()));
        let ci = auth.check(Some("Bearer ci-read-only-token"), Access::Read).unwrap();
        assert_eq!(ci, Actor("ci".to_string()));
    }

    #[test]
    fn refuses_missing_unknown_and_read_only_writes() {
        let auth = Auth::parse(FILE, "tokens").unwrap();
        assert!(matches!(auth.check(None, Access::Read), Err(ApiError::Unauthorized(_))));
        assert!(matches!(auth.check(Some("Basic abc"), Access::Read), Err(ApiError::Unauthorized(_))));
        assert!(matches!(
            auth.check(Some("Bearer nope-nope-nope"), Access::Read),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            auth.check(Some("Bearer ci-read-only-token"), Access::Write),
            Err(ApiError::Forbidden(_))
        ));
    }

    #[test]
    fn open_auth_is_anonymous() {
        let auth = Auth::open();
        assert!(!auth.required());
        assert_eq!(auth.check(None, Access::Write).unwrap(), Actor(ANONYMOUS.to_string()));
    }

    #[test]
    fn bad_lines_name_their_line_number() {
        let cases = [
            ("alice write\n", 1, "expected `NAME write|read TOKEN`, found 2 field(s)"),
            ("# c\nalice admin s3cret-alice-token\n", 2, "access must be `write` or `read`, not \"admin\""),
            ("alice write short\n", 1, "the token must be at least 8 characters long"),
            ("a write s3cret-alice-token\na read s3cret-other-token\n", 2, "name \"a\" is used twice"),
            (
                "a write s3cret-alice-token\nb read s3cret-alice-token\n",
                2,
                "this token is already given to another name",
            ),
        ];
        for (text, line, message) in cases {
            match Auth::parse(text, "t") {
                Err(TokenFileError::Line { line: l, message: m, .. }) => {
                    assert_eq!((l, m.as_str()), (line, message), "{text:?}")
                }
                other => panic!("{text:?}: expected a line error, got {other:?}"),
            }
        }
        assert!(matches!(Auth::parse("# nothing\n", "t"), Err(TokenFileError::Empty { .. })));
        let shown = Auth::parse("x\n", "/etc/ballast/tokens").unwrap_err().to_string();
        assert_eq!(
            shown,
            "token file /etc/ballast/tokens line 1: expected `NAME write|read TOKEN`, found 1 field(s)"
        );
    }
}
