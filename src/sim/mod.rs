//! The simulated world: one state model per device kind and the fault plan.

pub mod faults;
