//! Fairshare admission.
//!
//! [`core`] is the scheduler itself: a pure state machine with time passed in, so that
//! the simulator (`obleth-sim`) drives exactly the code the gateway runs. [`Fairshare`]
//! wraps it for the gateway: a mutex around the core, a oneshot channel per waiting
//! request, and permits whose `Drop` releases the slot.

pub mod core;
mod runtime;
pub mod telemetry;

pub use runtime::{Fairshare, FairshareConfig};
