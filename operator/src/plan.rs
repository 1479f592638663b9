//! The pure planner: desired + observed state of one (role, host) unit in, actions out. No I/O, no clock.
