//! In-process tests of the router.
