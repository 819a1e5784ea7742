//! A command's event stream that resumes by itself.
//!
//! The stream remembers the last eid it handed out. When the connection
//! breaks (an error, an early end, or silence past the idle timeout), it
//! drops whatever part of a frame had arrived and asks the host for the
//! events after that eid, so the consumer sees each event exactly once.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::event::{self, Event, Frame};
use crate::framing::{Decoder, Raw};
use crate::transport::Reply;

/// What a stream tells a [`Client`]'s reconnection hook before each wait:
/// why it is reconnecting, and from where.
#[derive(Debug)]
#[non_exhaustive]
pub struct Reconnect<'a> {
    /// The command being followed.
    pub command_id: &'a str,
    /// The last eid delivered; the attempt resumes after it.
    pub after_eid: u64,
    /// 1 for the first attempt of a streak of failures.
    pub attempt: u32,
    /// The wait before this attempt.
    pub delay: Duration,
    /// Why: the cut, or the previous attempt's failure (a 409 here means
    /// another reader holds the command under the `exclusive` policy).
    pub cause: &'a Error,
}

/// The events of one command, each exactly once, in order.
///
/// Returned by [`Client::run`], [`Client::attach`] and
/// [`Client::session_run`]. Read it with [`next`](Self::next), or turn it
/// into a [`futures_core::Stream`] with [`into_stream`](Self::into_stream).
/// It ends (`None`) after the [`Event::Exit`], after a background run's
/// [`Event::Started`], or when the host answers a resume with 204; an
/// error ends it too.
///
/// ```no_run
/// # async fn example() -> Result<(), execd_client::Error> {
/// use execd_client::{Client, Event};
///
/// let client = Client::new("http://127.0.0.1:44772")?;
/// let mut events = client.attach("some-command-id", 0).await?;
/// while let Some(event) = events.next().await {
///     match event? {
///         Event::Stdout(line) => print!("{}", line.as_written()),
///         Event::Exit(exit) => println!("exited {}", exit.code),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
pub struct EventStream {
    client: Client,
    command_id: Option<String>,
    /// The last eid handed to the consumer (a gap counts to its end).
    last_eid: u64,
    reply: Option<Reply>,
    decoder: Decoder,
    /// Set once the stream has ended; `next` then returns `None`.
    done: bool,
    /// The current streak of failed attempts: when it began, how many.
    streak: Option<(Instant, u32)>,
    reconnects: u64,
    /// How the run was started, until the host names the command: a cut
    /// before `init` sends the same start again, with the same key.
    start: Option<Start>,
    /// Why the first attempt at the start broke, for the retry to report.
    cut: Option<Error>,
}

/// A start as sent: the route, the body and its `Idempotency-Key` (and
/// the session, for errors that name it).
#[derive(Clone, Debug)]
pub(crate) struct Start {
    pub path: String,
    pub body: Vec<u8>,
    pub key: String,
    pub session: Option<String>,
}

/// What opening a resume gives.
pub(crate) enum Opened {
    /// A stream of events.
    Stream(Reply),
    /// 204: nothing after the cursor, the command has ended.
    NoContent,
}

impl EventStream {
    pub(crate) fn new(
        client: Client,
        command_id: Option<String>,
        after_eid: u64,
        opened: Opened,
    ) -> EventStream {
        let (reply, done) = match opened {
            Opened::Stream(reply) => (Some(reply), false),
            Opened::NoContent => (None, true),
        };
        EventStream {
            client,
            command_id,
            last_eid: after_eid,
            reply,
            decoder: Decoder::default(),
            done,
            streak: None,
            reconnects: 0,
            start: None,
            cut: None,
        }
    }

    /// The stream of a run: `opened` is the start's answer, or, with
    /// `cut`, nothing yet (the first attempt broke after it may have been
    /// sent).
    pub(crate) fn started(
        client: Client,
        start: Start,
        opened: Opened,
        cut: Option<Error>,
    ) -> EventStream {
        let retry = cut.is_some();
        let mut stream = EventStream::new(client, None, 0, opened);
        stream.start = Some(start);
        stream.cut = cut;
        if retry {
            stream.done = false;
        }
        stream
    }

    /// The command's id, once known (from the start on an attach; after
    /// [`Event::Started`] on a run).
    pub fn command_id(&self) -> Option<&str> {
        self.command_id.as_deref()
    }

    /// The last eid delivered: where a later [`Client::attach`] would
    /// pick up.
    pub fn last_eid(&self) -> u64 {
        self.last_eid
    }

    /// How many times this stream has reconnected successfully.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The next event; `None` once the stream has ended. After an error,
    /// the stream has ended.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        while !self.done {
            match self.step().await {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => {}
                Err(error) => {
                    self.end();
                    return Some(Err(error));
                }
            }
        }
        None
    }

    /// This stream as a [`futures_core::Stream`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), execd_client::Error> {
    /// use futures_util::StreamExt;
    /// use execd_client::{Client, Run};
    ///
    /// let client = Client::new("http://127.0.0.1:44772")?;
    /// let events = client.run(Run::shell("seq 3")).await?.into_stream();
    /// let all: Vec<_> = events.collect().await;
    /// # Ok(()) }
    /// ```
    pub fn into_stream(self) -> impl futures_core::Stream<Item = Result<Event>> + Send + Unpin {
        Box::pin(futures_util::stream::unfold(
            self,
            |mut stream| async move {
                let item = stream.next().await?;
                Some((item, stream))
            },
        ))
    }

    fn end(&mut self) {
        self.done = true;
        self.reply = None;
    }

    /// One step: an event handed out, nothing yet (more bytes read, or a
    /// reconnection made), or the end.
    async fn step(&mut self) -> Result<Option<Event>> {
        let Some(reply) = self.reply.as_mut() else {
            let cut = self.cut.take();
            self.reconnect(cut).await?;
            return Ok(None);
        };
        if let Some(raw) = self.decoder.next() {
            return self.frame(raw);
        }
        let idle = self.client.inner.idle_timeout;
        let cut = match tokio::time::timeout(idle, reply.body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    self.decoder.feed(&data);
                }
                return Ok(None);
            }
            Ok(Some(Err(e))) => Error::Transport(format!("the stream broke: {e}")),
            Ok(None) => {
                Error::Transport("the host ended the stream before the command's end".into())
            }
            Err(_) => Error::Transport(format!(
                "no bytes from the host for {idle:?} (it sends a keepalive every 3 s)"
            )),
        };
        self.reconnect(Some(cut)).await?;
        Ok(None)
    }

    /// Handles one decoded frame.
    fn frame(&mut self, raw: Raw) -> Result<Option<Event>> {
        let data = match raw {
            Raw::Comment => {
                self.streak = None;
                return Ok(None);
            }
            Raw::Data(data) => data,
        };
        let event = match event::parse(&data)? {
            None | Some(Frame::Keepalive) => {
                self.streak = None;
                return Ok(None);
            }
            Some(Frame::Spawned) => {
                self.end();
                return Ok(None);
            }
            Some(Frame::Event(event)) => event,
        };
        self.streak = None;
        match &event {
            Event::Started { command_id } => {
                if self.command_id.is_some() {
                    return Ok(None);
                }
                self.command_id = Some(command_id.clone());
                // Named: from now on a cut resumes by id.
                self.start = None;
            }
            Event::Gap(gap) => {
                if gap.to_eid <= self.last_eid {
                    return Ok(None);
                }
                self.last_eid = gap.to_eid;
            }
            Event::Stdout(_) | Event::Stderr(_) | Event::Exit(_) => {
                let eid = event.eid().unwrap_or(0);
                // The host never repeats an eid after the cursor; this
                // guards the exactly-once promise against one that does.
                if eid <= self.last_eid {
                    return Ok(None);
                }
                self.last_eid = eid;
                if matches!(event, Event::Exit(_)) {
                    self.end();
                }
            }
        }
        Ok(Some(event))
    }

    /// Drops the current connection and opens a resume after the last
    /// eid, waiting with backoff between attempts.
    async fn reconnect(&mut self, cut: Option<Error>) -> Result<()> {
        self.reply = None;
        // A frame cut in the middle is incomplete: the resume sends it
        // again whole.
        self.decoder = Decoder::default();
        let Some(id) = self.command_id.clone() else {
            return self.restart(cut).await;
        };
        let mut cause = cut.unwrap_or_else(|| Error::Transport("no connection".into()));
        loop {
            let (attempt, delay, kept) = self.next_attempt(cause)?;
            cause = kept;
            if let Some(hook) = &self.client.inner.on_reconnect {
                hook(&Reconnect {
                    command_id: &id,
                    after_eid: self.last_eid,
                    attempt,
                    delay,
                    cause: &cause,
                });
            }
            tokio::time::sleep(delay).await;
            match self.client.open_resume(&id, self.last_eid).await {
                Ok(Opened::Stream(reply)) => {
                    self.reply = Some(reply);
                    self.reconnects += 1;
                    return Ok(());
                }
                Ok(Opened::NoContent) => {
                    self.end();
                    return Ok(());
                }
                Err(Error::NotFound {
                    what: "command", ..
                }) => {
                    return Err(Error::Expired {
                        id,
                        after_eid: self.last_eid,
                    });
                }
                Err(error) if error.is_transient() => cause = error,
                Err(error) => return Err(error),
            }
        }
    }

    /// A cut before the host named the command: the start again, with
    /// the same `Idempotency-Key`, so the host answers with the command it
    /// started (from `init` on) rather than run it twice.
    async fn restart(&mut self, cut: Option<Error>) -> Result<()> {
        let mut cause = cut.unwrap_or_else(|| Error::Transport("no connection".into()));
        let Some(start) = self.start.clone() else {
            return Err(Error::LostBeforeStart(cause.to_string()));
        };
        loop {
            let (_, delay, _) = self.next_attempt(cause)?;
            tokio::time::sleep(delay).await;
            match self.client.post_start(&start).await {
                Ok(reply) => {
                    self.reply = Some(reply);
                    self.reconnects += 1;
                    return Ok(());
                }
                Err(error) if error.is_transient() => cause = error,
                Err(error) => return Err(error),
            }
        }
    }

    /// The next attempt of the current streak of failures: its number and
    /// the delay before it, with `cause` handed back; past the backoff's
    /// bound, the streak gives up with `cause` as the last error.
    fn next_attempt(&mut self, cause: Error) -> Result<(u32, Duration, Error)> {
        let backoff = self.client.inner.backoff.clone();
        let (started, attempts) = *self.streak.get_or_insert((Instant::now(), 0));
        let delay = backoff.delay(attempts);
        let elapsed = started.elapsed();
        if elapsed + delay > backoff.elapsed_bound() {
            return Err(Error::GaveUp {
                attempts,
                elapsed,
                last: Box::new(cause),
            });
        }
        self.streak = Some((started, attempts + 1));
        Ok((attempts + 1, delay, cause))
    }
}

/// Whether the host refused a reader because another holds the command.
pub(crate) fn is_conflict(error: &Error) -> bool {
    matches!(error, Error::Api { status: 409, .. })
}
