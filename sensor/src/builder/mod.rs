//! Records from kernel events: the blocks that describe a process, a file operation or a
//! connection, and the folding of exact repeats.
pub mod activity;
pub mod repeats;
