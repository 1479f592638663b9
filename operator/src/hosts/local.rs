//! local host access (to be written).
