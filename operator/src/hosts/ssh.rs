//! ssh host access (to be written).
