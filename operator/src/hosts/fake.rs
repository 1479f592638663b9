//! fake host access (to be written).
