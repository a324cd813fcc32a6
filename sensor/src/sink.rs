//! Where records go. For now standard output or an appended file; the durable, rotating file
//! sink and the network sinks build on this interface.
use std::path::Path;

use tokio::io::{AsyncWrite, AsyncWriteExt as _};

pub struct Sink {
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    file: Option<tokio::fs::File>,
}

impl Sink {
    pub fn stdout() -> Self {
        Self {
            writer: Box::new(tokio::io::stdout()),
            file: None,
        }
    }

    /// Appends to `path`, creating it owner-only (records can reveal what processes did).
    pub async fn append(path: &Path) -> std::io::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .await?;
        let for_sync = file.try_clone().await?;
        Ok(Self {
            writer: Box::new(file),
            file: Some(for_sync),
        })
    }

    /// Writes whole records (each ends in a newline).
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// Makes what was written durable, where that means anything.
    pub async fn sync(&mut self) -> std::io::Result<()> {
        self.writer.flush().await?;
        if let Some(file) = &self.file {
            file.sync_data().await?;
        }
        Ok(())
    }
}
