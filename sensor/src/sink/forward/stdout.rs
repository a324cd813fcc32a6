//! The stdout sink (`type = "stdout"`): the records as JSON Lines on the sensor's standard
//! output, for a container runtime's log or a collector reading a pipe, while the output
//! keeps the trail in files. A batch counts as delivered once the pipe (or file) behind
//! standard output took all of it: a reader that is slow or gone holds records in the
//! queue, never the pipeline. A reader that dies loses what its pipe held unread; the next
//! reader gets the records from the first unacknowledged one.
use std::io::{self, Write as _};

use super::Transport;

/// Writes to the process's standard output.
pub struct Stdout;

impl Transport for Stdout {
    fn describe(&self) -> String {
        "stdout".to_owned()
    }

    fn deliver(&mut self, records: &[u8]) -> io::Result<()> {
        // Only this sink writes to standard output (the config refuses an output there too),
        // and the lock keeps a batch's lines whole.
        let mut out = io::stdout().lock();
        out.write_all(records)?;
        out.flush()
    }

    fn disconnect(&mut self) {}
}
