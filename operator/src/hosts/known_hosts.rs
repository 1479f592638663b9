//! known_hosts host access (to be written).
