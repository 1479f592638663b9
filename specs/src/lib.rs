//! ballast's spec and API wire types: YAML parsing, validation, quantities, label selectors and JSON Schema.
//! Pure: no I/O.

mod host_ports;
pub mod model;
pub mod parse;
pub mod ports;
pub mod problem;
pub mod quantity;
pub mod rollout;
pub mod schema;
pub mod selector;
pub mod validate;
pub mod wire;

pub use model::{
    Health, Host, HostSpec, HttpCheck, Kind, Logging, Metadata, Object, Proxy, Resources, Role, RoleControl,
    RoleSpec, Rollout, Secrets, Strategy, API_VERSION,
};
pub use parse::{parse_documents, parse_file, Document, MAX_FILE_BYTES};
pub use ports::{parse_port, PortMapping, Protocol};
pub use problem::Problem;
pub use quantity::{format_bytes, Cpus, Duration, Memory};
pub use rollout::MaxUnavailable;
pub use schema::json_schema;
pub use selector::Selector;
pub use validate::{check_env_name, check_image, check_name, validate_object, validate_set};
