//! ballast's spec and API wire types: YAML parsing, validation, quantities and JSON Schema. Pure: no I/O.

pub mod model;
pub mod parse;
pub mod problem;
pub mod quantity;
pub mod validate;
pub mod wire;

pub use model::{
    Health, Host, HostSpec, HttpCheck, Kind, Logging, Metadata, Object, Resources, Role, RoleControl,
    RoleSpec, Secrets, Strategy, API_VERSION,
};
pub use parse::parse_documents;
pub use problem::Problem;
pub use quantity::{format_bytes, Cpus, Duration, Memory};
pub use validate::{validate_object, validate_set};
