//! Offline user tools over files: `eval` and `compare` (DESIGN §7). They read plain text, run
//! the same detector code as the service and print JSON on stdout. Also the readers of
//! recorded events that `replay` and `baseline` share ([`events`]).

pub mod compare;
pub mod eval;
pub mod events;
pub mod lines;
