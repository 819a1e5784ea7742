//! The pump: reads both pipes of a running command, splits lines and
//! appends them to its log in batches, and logs the terminal event once
//! the process has exited and its pipes are drained.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::time::{Instant, sleep_until};

use crate::command::{Command, status_of};
use crate::ending::describe;
use crate::exec::lines::LineSplitter;
use crate::policy::wit::{Batch, Channel, Ending, Reason};
use crate::time::{now_ms, unix_ms};

/// How long an unterminated line may wait for its end before it is sent
/// as it is (prompts, progress dots). Counted from when that line began, so
/// a steady stream of whole lines is never cut.
const PARTIAL_FLUSH: Duration = Duration::from_millis(50);
/// After the process exits, how long the pipes may stay quiet before we
/// stop reading them (descendants may hold them open).
const DRAIN_QUIET: Duration = Duration::from_millis(250);
/// After the process exits, the most time spent draining its pipes.
const DRAIN_MAX: Duration = Duration::from_secs(5);
/// Bytes read from a pipe at a time: a full pipe buffer.
const READ_CHUNK: usize = 64 * 1024;

/// One of the two pipes, with its splitter.
struct Pipe<R> {
    reader: Option<R>,
    splitter: LineSplitter,
    channel: Channel,
    buf: Vec<u8>,
    /// When the unterminated line now held began arriving.
    partial_since: Option<Instant>,
}

impl<R: tokio::io::AsyncRead + Unpin> Pipe<R> {
    fn new(reader: Option<R>, channel: Channel, max_line: usize) -> Self {
        Pipe {
            reader,
            splitter: LineSplitter::new(max_line),
            channel,
            buf: vec![0; READ_CHUNK],
            partial_since: None,
        }
    }

    /// Reads one chunk; `Ok(0)` at end of file. Pends forever once closed,
    /// so it can sit in a `select!` beside the other pipe.
    async fn read(&mut self) -> std::io::Result<usize> {
        match &mut self.reader {
            Some(r) => r.read(&mut self.buf).await,
            None => std::future::pending().await,
        }
    }

    fn lines(&mut self, n: usize, batch: &mut Batch) {
        let (channel, ts) = (self.channel, now_ms());
        let before = batch.len();
        self.splitter.push(&self.buf[..n], |line, partial| {
            batch.push_line(channel, ts, line, partial)
        });
        let completed_a_line = batch.len() > before;
        self.partial_since = match (self.splitter.has_partial(), self.partial_since) {
            (false, _) => None,
            (true, Some(since)) if !completed_a_line => Some(since),
            (true, _) => Some(Instant::now()),
        };
    }

    /// When the held partial line is due to be sent as it is.
    fn partial_due(&self) -> Option<Instant> {
        self.partial_since.map(|since| since + PARTIAL_FLUSH)
    }

    fn flush(&mut self, batch: &mut Batch) {
        self.partial_since = None;
        let (channel, ts) = (self.channel, now_ms());
        self.splitter
            .flush(|line, partial| batch.push_line(channel, ts, line, partial));
    }

    /// Sends the held partial line because the pipe went quiet; half a
    /// character stays for the bytes that complete it (and the next read
    /// starts the wait again).
    fn flush_idle(&mut self, batch: &mut Batch) {
        self.partial_since = None;
        let (channel, ts) = (self.channel, now_ms());
        self.splitter
            .flush_idle(|line, partial| batch.push_line(channel, ts, line, partial));
    }
}

/// Reads the command's output into its log until the process has exited
/// and its pipes are drained, then logs the terminal event. Returns the
/// pipes that something the command left running still holds open.
pub async fn pump(
    command: Arc<Command>,
    pipes: (Option<ChildStdout>, Option<ChildStderr>),
    timeout: Option<Duration>,
    max_line: usize,
) -> Leftover {
    let mut out = Pipe::<ChildStdout>::new(pipes.0, Channel::Stdout, max_line);
    let mut err = Pipe::<ChildStderr>::new(pipes.1, Channel::Stderr, max_line);
    let Some(group) = command.group().map(Arc::clone) else {
        // Ran by a previous host: nothing to pump.
        return Leftover {
            out: out.reader,
            err: err.reader,
        };
    };
    // Noted, not reaped: the group stays signallable (see `group`).
    let leader_exit = group.leader_exit();
    tokio::pin!(leader_exit);
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut timed_out = false;
    let mut exit: Option<ExitStatus> = None;
    let mut exited_at = Instant::now();
    let mut quiet_until = Instant::now();
    let far = Instant::now() + Duration::from_secs(86400 * 365);

    while out.reader.is_some() || err.reader.is_some() || exit.is_none() {
        let mut batch = Batch::new();
        let partial_due = match (out.partial_due(), err.partial_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Biased: the timeout and the drain cap first (a flooded pipe cannot
        // hold them off), then reads, so a late wake-up cannot let an expired timer
        // (partial flush, drain) win over output already in the pipe.
        tokio::select! {
            biased;
            // Armed until the output is drained: descendants that keep the
            // pipes busy after the leader exited are part of the command.
            _ = sleep_until(deadline.unwrap_or(far)), if !timed_out && deadline.is_some() => {
                timed_out = true;
                // Noted first: the ending must say timeout, not signal.
                command.note_cause(Reason::Timeout);
                command.signal(libc::SIGKILL);
            }
            // Descendants may keep a pipe busy forever: stop at the cap.
            _ = sleep_until(exited_at + DRAIN_MAX), if exit.is_some() => break,
            read = out.read() => on_read(&command, &mut out, read, &mut batch),
            read = err.read() => on_read(&command, &mut err, read, &mut batch),
            status = &mut leader_exit, if exit.is_none() => {
                exit = Some(status);
                exited_at = Instant::now();
                quiet_until = exited_at + DRAIN_QUIET;
            }
            _ = sleep_until(partial_due.unwrap_or(far)), if partial_due.is_some() => {
                let now = Instant::now();
                if out.partial_due().is_some_and(|due| due <= now) {
                    out.flush_idle(&mut batch);
                }
                if err.partial_due().is_some_and(|due| due <= now) {
                    err.flush_idle(&mut batch);
                }
            }
            _ = sleep_until(quiet_until), if exit.is_some() => break,
        }
        if exit.is_some() && !batch.is_empty() {
            quiet_until = Instant::now() + DRAIN_QUIET;
        }
        command.log.append(batch).await;
    }
    let mut batch = Batch::new();
    out.flush(&mut batch);
    err.flush(&mut batch);
    command.log.append(batch).await;

    if let Some(output) = &command.output {
        output.close();
    }
    let status = exit.unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL));
    let (outcome, reason, signal) = describe(status, command.cause());
    let (exit_code, error) = status_of(&outcome);
    let finished_at = std::time::SystemTime::now();
    let ending = Ending {
        outcome,
        reason,
        signal,
        execution_ms: command.started.elapsed().as_millis() as u64,
        timestamp_ms: unix_ms(finished_at),
    };
    {
        let mut s = command.status();
        s.running = false;
        s.exit_code = Some(exit_code);
        s.error = error;
        s.reason = Some(crate::ending::reason_word(reason));
        s.signal = signal;
        s.ending = Some(crate::ending::Ending::of(&ending));
        // The same instant as the terminal event's, which is what a
        // restarted host reports.
        s.finished_at = Some(finished_at);
    }
    command.log.finish(ending.clone()).await;
    if let (Some(record), Some(eid)) = (&command.record, command.log.terminal().await) {
        record.set_ending(eid, &ending);
    }
    Leftover {
        out: out.reader,
        err: err.reader,
    }
}

/// A command's pipes still open after its terminal event: what it left
/// running (`./server & echo started`) holds them.
pub struct Leftover {
    out: Option<ChildStdout>,
    err: Option<ChildStderr>,
}

/// Bytes read at a time from a leftover pipe: small, since many may wait
/// at once and what they read is thrown away.
const LEFTOVER_CHUNK: usize = 4096;

impl Leftover {
    pub fn is_empty(&self) -> bool {
        self.out.is_none() && self.err.is_none()
    }

    /// Reads and throws away whatever comes until every holder has closed
    /// the pipes. Closed by the host instead, they would kill the next
    /// writer with SIGPIPE; left unread, they would block it once full.
    /// The command's log ended with its terminal event, so nothing more
    /// can be logged.
    pub async fn discard(self) {
        async fn drain(pipe: Option<impl tokio::io::AsyncRead + Unpin>) {
            let Some(mut pipe) = pipe else { return };
            let mut buf = [0u8; LEFTOVER_CHUNK];
            while matches!(pipe.read(&mut buf).await, Ok(n) if n > 0) {}
        }
        tokio::join!(drain(self.out), drain(self.err));
    }
}

fn on_read<R>(
    command: &Command,
    pipe: &mut Pipe<R>,
    read: std::io::Result<usize>,
    batch: &mut Batch,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    match read {
        Ok(0) | Err(_) => {
            pipe.reader = None;
            pipe.flush(batch);
        }
        Ok(n) => {
            if let Some(output) = &command.output {
                output.append(&pipe.buf[..n]);
            }
            pipe.lines(n, batch);
        }
    }
}
