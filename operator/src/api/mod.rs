//! The HTTP API: `/up`, `/metrics` and the JSON API under `/api/v1/`. Handlers only translate.
