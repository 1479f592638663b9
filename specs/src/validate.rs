//! Semantic checks of objects, on their own and as a set to be stored.

use crate::model::Object;
use crate::problem::Problem;

/// Checks one object: names, quantities, image, ports, health, secrets source. Paths are relative to the document.
pub fn validate_object(object: &Object) -> Vec<Problem> {
    let _ = object;
    Vec::new()
}

/// Checks a set of objects about to be stored together: duplicate names, and roles naming hosts that
/// are neither in the set nor in `stored_hosts`. Each problem comes with the index of its object.
pub fn validate_set(objects: &[Object], stored_hosts: &[String]) -> Vec<(usize, Problem)> {
    let _ = (objects, stored_hosts);
    Vec::new()
}
