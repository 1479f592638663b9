//! The container label schema (a persisted format) and the hash of everything that forces a recreate.
