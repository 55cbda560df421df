//! Component stdout/stderr, as `spin up` handles them: appended to
//! `<state_dir>/logs/<component>_stdout.txt` / `_stderr.txt`, and both
//! echoed to the host's stderr (unless `--quiet`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Which of a component's output streams.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Which {
    Stdout,
    Stderr,
}

/// One component's output stream, shared by all of its instances.
#[derive(Clone)]
pub(crate) struct TeeOutput {
    file: Option<Arc<Mutex<File>>>,
    /// Whether to echo to the host's stderr (tests turn this off).
    echo: bool,
}

impl TeeOutput {
    /// A component's stream, appended to its log file in `log_dir` (none:
    /// no file) and echoed to the runner's stderr when `echo`.
    pub(crate) fn open(log_dir: Option<&Path>, component: &str, which: Which, echo: bool) -> io::Result<Self> {
        let file = match log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let suffix = match which {
                    Which::Stdout => "stdout",
                    Which::Stderr => "stderr",
                };
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{component}_{suffix}.txt")))?;
                Some(Arc::new(Mutex::new(f)))
            }
            None => None,
        };
        Ok(TeeOutput { file, echo })
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        if self.echo {
            // Terminal output is best effort: a closed terminal must not fail the guest.
            let _ = io::stderr().lock().write_all(buf);
        }
        if let Some(f) = &self.file {
            f.lock()
                .map_err(|_| io::Error::other("log file lock poisoned"))?
                .write_all(buf)?;
        }
        Ok(())
    }
}

impl IsTerminal for TeeOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TeeOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for TeeOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // Writes are small log lines; doing them synchronously keeps their
        // order across the terminal and the file.
        Poll::Ready(self.write_all(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
