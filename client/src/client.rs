//! The client: where the host is, how to authenticate and reconnect, and
//! one method per endpoint of the contract.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde::Deserialize;

use crate::backoff::Backoff;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::framing::Framing;
use crate::run::Run;
use crate::status::{CommandInfo, CommandList, Logs, SessionInfo, SessionList, Status};
use crate::stream::{self, EventStream, Opened, Reconnect, Start};
use crate::transport::{Subject, Transport, encode};

/// The hook a client calls before each reconnection attempt.
type ReconnectHook = Arc<dyn Fn(&Reconnect<'_>) + Send + Sync>;

/// A client of one execd-host. Cheap to clone; every clone shares the
/// configuration.
///
/// ```no_run
/// # async fn example() -> Result<(), execd_client::Error> {
/// use execd_client::{Client, Event, Run};
///
/// let client = Client::builder("http://127.0.0.1:44772").token("secret").build()?;
/// let mut events = client.run(Run::shell("echo hello; exit 3")).await?;
/// while let Some(event) = events.next().await {
///     match event? {
///         Event::Stdout(line) => println!("out: {}", line.text),
///         Event::Stderr(line) => eprintln!("err: {}", line.text),
///         Event::Gap(gap) => eprintln!("lost events {}..={}", gap.from_eid, gap.to_eid),
///         Event::Exit(exit) => assert_eq!(exit.code, 3),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) transport: Transport,
    pub(crate) framing: Option<Framing>,
    pub(crate) backoff: Backoff,
    pub(crate) idle_timeout: Duration,
    pub(crate) on_reconnect: Option<ReconnectHook>,
}

/// Configures a [`Client`]; every knob has a documented default.
///
/// ```
/// use std::time::Duration;
/// use execd_client::{Backoff, Client, Framing};
///
/// let client = Client::builder("http://127.0.0.1:44772")
///     .token("secret")
///     .framing(Framing::Legacy)
///     .backoff(Backoff::default().max_elapsed(Duration::from_secs(5)))
///     .idle_timeout(Duration::from_secs(20))
///     .on_reconnect(|r| eprintln!("resuming {} after eid {}", r.command_id, r.after_eid))
///     .build()?;
/// # Ok::<(), execd_client::Error>(())
/// ```
pub struct ClientBuilder {
    url: String,
    token: Option<String>,
    framing: Option<Framing>,
    backoff: Backoff,
    idle_timeout: Duration,
    connect_timeout: Duration,
    request_timeout: Duration,
    on_reconnect: Option<ReconnectHook>,
}

impl ClientBuilder {
    /// Default bound on silence from a stream before it counts as cut: the
    /// host sends a keepalive every 3 s, so this is several missed ones.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
    /// Default time to make a TCP connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default time for a response's head (and for a whole non-stream body).
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    /// The access token sent as `X-EXECD-ACCESS-TOKEN` (default: none).
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into());
        self
    }

    /// Ask the host for this framing with `?framing=` (default: whatever
    /// the host serves; both are read either way).
    pub fn framing(mut self, framing: Framing) -> ClientBuilder {
        self.framing = Some(framing);
        self
    }

    /// How streams reconnect (default [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> ClientBuilder {
        self.backoff = backoff;
        self
    }

    /// Silence after which a stream counts as cut and reconnects (default
    /// [`DEFAULT_IDLE_TIMEOUT`](Self::DEFAULT_IDLE_TIMEOUT)).
    pub fn idle_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.idle_timeout = timeout;
        self
    }

    /// Time to make a TCP connection (default
    /// [`DEFAULT_CONNECT_TIMEOUT`](Self::DEFAULT_CONNECT_TIMEOUT)).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// Time for a response's head, and for the whole body of a call that
    /// is not a stream (default
    /// [`DEFAULT_REQUEST_TIMEOUT`](Self::DEFAULT_REQUEST_TIMEOUT)).
    pub fn request_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.request_timeout = timeout;
        self
    }

    /// Called before each reconnection attempt and each wait for another
    /// reader to leave (default: none). It runs on the stream's task: keep
    /// it short.
    pub fn on_reconnect(
        mut self,
        hook: impl Fn(&Reconnect<'_>) + Send + Sync + 'static,
    ) -> ClientBuilder {
        self.on_reconnect = Some(Arc::new(hook));
        self
    }

    /// Checks the URL and builds the client. Fails on a URL that is not
    /// `http://HOST[:PORT][/PREFIX]`, and says so for `https://`.
    pub fn build(self) -> Result<Client> {
        let endpoint = Endpoint::parse(&self.url)?;
        Ok(Client {
            inner: Arc::new(Inner {
                transport: Transport {
                    endpoint,
                    token: self.token,
                    connect_timeout: self.connect_timeout,
                    request_timeout: self.request_timeout,
                },
                framing: self.framing,
                backoff: self.backoff,
                idle_timeout: self.idle_timeout,
                on_reconnect: self.on_reconnect,
            }),
        })
    }
}

#[derive(Deserialize)]
struct SessionCreated {
    session_id: String,
}

impl Client {
    /// A client of the host at `url` with every default.
    ///
    /// ```
    /// let client = execd_client::Client::new(execd_client::DEFAULT_URL)?;
    /// assert!(execd_client::Client::new("https://example.com").is_err());
    /// # Ok::<(), execd_client::Error>(())
    /// ```
    pub fn new(url: &str) -> Result<Client> {
        Client::builder(url).build()
    }

    /// A builder for a client of the host at `url`.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            token: None,
            framing: None,
            backoff: Backoff::default(),
            idle_timeout: ClientBuilder::DEFAULT_IDLE_TIMEOUT,
            connect_timeout: ClientBuilder::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: ClientBuilder::DEFAULT_REQUEST_TIMEOUT,
            on_reconnect: None,
        }
    }

    /// The host's base URL.
    pub fn url(&self) -> &str {
        self.inner.transport.endpoint.url()
    }

    fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    fn framing_query(&self, sep: char) -> String {
        self.inner
            .framing
            .map(|f| format!("{sep}framing={}", f.as_str()))
            .unwrap_or_default()
    }

    /// `GET /ping`: whether the host is up and accepts the token.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), execd_client::Error> {
    /// execd_client::Client::new("http://127.0.0.1:44772")?.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<()> {
        self.transport()
            .call(Method::GET, "/ping", None, Subject::None)
            .await
            .map(drop)
    }

    /// Runs a command and streams its events: [`Event::Started`] with its
    /// id, its lines, and its [`Event::Exit`]. The stream resumes by itself
    /// after a cut. A background run's stream ends after `Started`.
    ///
    /// The start carries a fresh `Idempotency-Key`: if the connection
    /// breaks before the host names the command, the client sends the same
    /// start again (with backoff, within the backoff's bound), and the
    /// host answers with the command it started instead of running it
    /// twice. A host that cannot be reached at all fails at once with
    /// [`Error::Unreachable`], since it never saw the request.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), execd_client::Error> {
    /// use execd_client::{Client, Event, Run};
    ///
    /// let client = Client::new("http://127.0.0.1:44772")?;
    /// let mut events = client.run(Run::argv(["seq", "1", "3"])).await?;
    /// while let Some(event) = events.next().await {
    ///     if let Event::Stdout(line) = event? {
    ///         println!("{}", line.text);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn run(&self, run: Run) -> Result<EventStream> {
        let path = format!("/command{}", self.framing_query('?'));
        self.start(&path, run.to_json(), None).await
    }

    /// Starts a command in the background and returns its id; follow it
    /// with [`attach`](Self::attach), read it with [`logs`](Self::logs).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), execd_client::Error> {
    /// use execd_client::{Client, Run};
    ///
    /// let client = Client::new("http://127.0.0.1:44772")?;
    /// let id = client.spawn(Run::shell("sleep 1; echo done")).await?;
    /// println!("started {id}");
    /// # Ok(()) }
    /// ```
    pub async fn spawn(&self, run: Run) -> Result<String> {
        let mut events = self.run(run.background(true)).await?;
        while let Some(event) = events.next().await {
            if let Event::Started { command_id } = event? {
                return Ok(command_id);
            }
        }
        Err(Error::Protocol(
            "the host's answer did not name the command".into(),
        ))
    }

    /// `POST` that answers with a command's stream, with a fresh
    /// `Idempotency-Key`: a cut before `init` retries the same start (see
    /// [`EventStream`]), and the host runs nothing twice.
    async fn start(&self, path: &str, body: Vec<u8>, session: Option<&str>) -> Result<EventStream> {
        let start = Start {
            path: path.to_string(),
            body,
            key: idempotency_key(),
            session: session.map(str::to_string),
        };
        match self.post_start(&start).await {
            Ok(reply) => Ok(EventStream::started(
                self.clone(),
                start,
                Opened::Stream(reply),
                None,
            )),
            // Connected and maybe sent: the host may have started it, so
            // the stream retries with the key rather than give up.
            Err(cut @ Error::Transport(_)) => Ok(EventStream::started(
                self.clone(),
                start,
                Opened::NoContent,
                Some(cut),
            )),
            Err(error) => Err(error),
        }
    }

    /// One attempt at a start: the `POST` with its key.
    pub(crate) async fn post_start(&self, start: &Start) -> Result<crate::transport::Reply> {
        let headers = [("Idempotency-Key", start.key.clone())];
        let reply = self
            .transport()
            .send(
                Method::POST,
                &start.path,
                &headers,
                Some(start.body.clone()),
            )
            .await?;
        if reply.status != StatusCode::OK {
            let subject = match &start.session {
                Some(session) => Subject::Session(session),
                None => Subject::None,
            };
            return Err(self.transport().error(reply, subject).await);
        }
        Ok(reply)
    }

    /// Follows command `id` from the events after `after_eid` (0: all the
    /// host retains) to its end, resuming by itself after a cut. A 409
    /// (another reader holds the command under the `exclusive` policy)
    /// waits with backoff until admitted; unknown ids fail with
    /// [`Error::NotFound`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), execd_client::Error> {
    /// use execd_client::{Client, Event};
    ///
    /// let client = Client::new("http://127.0.0.1:44772")?;
    /// let mut events = client.attach("3f2a...", 41).await?; // after eid 41
    /// while let Some(event) = events.next().await {
    ///     if let Event::Gap(gap) = event? {
    ///         eprintln!("{} events lost: {:?}", gap.events(), gap.reason);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn attach(&self, id: &str, after_eid: u64) -> Result<EventStream> {
        let backoff = &self.inner.backoff;
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            match self.open_resume(id, after_eid).await {
                Ok(opened) => {
                    return Ok(EventStream::new(
                        self.clone(),
                        Some(id.to_string()),
                        after_eid,
                        opened,
                    ));
                }
                // Only waiting for another reader is worth retrying here:
                // a host that is down at the start is reported at once.
                Err(error) if stream::is_conflict(&error) => {
                    let delay = backoff.delay(attempts);
                    if started.elapsed() + delay > backoff.elapsed_bound() {
                        return Err(Error::GaveUp {
                            attempts,
                            elapsed: started.elapsed(),
                            last: Box::new(error),
                        });
                    }
                    attempts += 1;
                    if let Some(hook) = &self.inner.on_reconnect {
                        hook(&Reconnect {
                            command_id: id,
                            after_eid,
                            attempt: attempts,
                            delay,
                            cause: &error,
                        });
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One `GET /command/{id}/resume?after_eid=N`.
    pub(crate) async fn open_resume(&self, id: &str, after_eid: u64) -> Result<Opened> {
        let path = format!(
            "/command/{}/resume?after_eid={after_eid}{}",
            encode(id),
            self.framing_query('&')
        );
        let reply = self.transport().send(Method::GET, &path, &[], None).await?;
        match reply.status {
            StatusCode::OK => Ok(Opened::Stream(reply)),
            StatusCode::NO_CONTENT => Ok(Opened::NoContent),
            _ => Err(self.transport().error(reply, Subject::Command(id)).await),
        }
    }

    /// `GET /command/status/{id}`.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), execd_client::Error> {
    /// let client = execd_client::Client::new("http://127.0.0.1:44772")?;
    /// let status = client.status("3f2a...").await?;
    /// println!("running: {}, exit code: {:?}", status.running, status.exit_code);
    /// # Ok(()) }
    /// ```
    pub async fn status(&self, id: &str) -> Result<Status> {
        let path = format!("/command/status/{}", encode(id));
        let (_, body) = self
            .transport()
            .call(Method::GET, &path, None, Subject::Command(id))
            .await?;
        json(&body)
    }

    /// `GET /command`: every command the host knows, running and
    /// retained, oldest first.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), execd_client::Error> {
    /// let client = execd_client::Client::new("http://127.0.0.1:44772")?;
    /// for command in client.list().await? {
    ///     println!("{} {}", command.status.id, command.status.content);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list(&self) -> Result<Vec<CommandInfo>> {
        let (_, body) = self
            .transport()
            .call(Method::GET, "/command", None, Subject::None)
            .await?;
        Ok(json::<CommandList>(&body)?.commands)
    }

    /// `GET /command/{id}/logs?cursor=B`: a background command's raw
    /// output from byte offset `cursor`; pass the answer's
    /// [`tail`](Logs::tail) as the next cursor. An answer cut off after
    /// some bytes is returned with them and [`cut`](Logs::cut) set; one cut
    /// before any is [`Error::Transport`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), execd_client::Error> {
    /// use std::io::Write;
    /// let client = execd_client::Client::new("http://127.0.0.1:44772")?;
    /// let logs = client.logs("3f2a...", 0).await?;
    /// std::io::stdout().write_all(&logs.bytes).ok();
    /// let next = client.logs("3f2a...", logs.tail).await?;
    /// # Ok(()) }
    /// ```
    pub async fn logs(&self, id: &str, cursor: u64) -> Result<Logs> {
        let path = format!("/command/{}/logs?cursor={cursor}", encode(id));
        let (headers, bytes, cut) = self
            .transport()
            .call_cut(Method::GET, &path, Subject::Command(id))
            .await?;
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let head = number("execd-commands-head-cursor");
        let from = cursor.max(head.unwrap_or(0));
        let tail = if cut {
            // What arrived is whole bytes of the output from `from`: the
            // next call starts after them.
            from + bytes.len() as u64
        } else {
            number("execd-commands-tail-cursor").unwrap_or(from + bytes.len() as u64)
        };
        Ok(Logs {
            bytes,
            from,
            tail,
            head,
            cut,
        })
    }

    /// `DELETE /command?id=ID`: SIGTERM to the command's process group,
    /// SIGKILL 3 s later. Its stream then ends with its [`Event::Exit`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), execd_client::Error> {
    /// execd_client::Client::new("http://127.0.0.1:44772")?.interrupt("3f2a...").await?;
    /// # Ok(()) }
    /// ```
    pub async fn interrupt(&self, id: &str) -> Result<()> {
        let path = format!("/command?id={}", encode(id));
        self.transport()
            .call(Method::DELETE, &path, None, Subject::Command(id))
            .await
            .map(drop)
    }

    /// `POST /session`: a new bash session; returns its id. Exported
    /// variables and the working directory carry over between its runs.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), execd_client::Error> {
    /// use execd_client::{Client, Run};
    ///
    /// let client = Client::new("http://127.0.0.1:44772")?;
    /// let session = client.session_new(Some("/tmp")).await?;
    /// let mut events = client.session_run(&session, Run::shell("export A=1; cd /")).await?;
    /// while let Some(event) = events.next().await { event?; }
    /// client.session_delete(&session).await?;
    /// # Ok(()) }
    /// ```
    pub async fn session_new(&self, cwd: Option<&str>) -> Result<String> {
        let body = match cwd {
            Some(cwd) => serde_json::json!({ "cwd": cwd }),
            None => serde_json::json!({}),
        };
        let (_, body) = self
            .transport()
            .call(
                Method::POST,
                "/session",
                Some(body.to_string().into_bytes()),
                Subject::None,
            )
            .await?;
        Ok(json::<SessionCreated>(&body)?.session_id)
    }

    /// `POST /session/{id}/run`: runs shell text (an argv is quoted for
    /// bash) in the session, with its `cwd` and `timeout`; the stream is a
    /// run's, resuming by itself. A busy session answers 409
    /// `SESSION_BUSY`.
    ///
    /// ```no_run
    /// # async fn example(client: execd_client::Client, session: String) -> Result<(), execd_client::Error> {
    /// use execd_client::{Event, Run};
    ///
    /// let mut events = client.session_run(&session, Run::shell("echo $A; pwd")).await?;
    /// while let Some(event) = events.next().await {
    ///     if let Event::Stdout(line) = event? {
    ///         println!("{}", line.text);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn session_run(&self, session: &str, run: Run) -> Result<EventStream> {
        let path = format!(
            "/session/{}/run{}",
            encode(session),
            self.framing_query('?')
        );
        self.start(&path, run.session_body(), Some(session)).await
    }

    /// `GET /session`: every session the host has, oldest first.
    ///
    /// ```no_run
    /// # async fn example(client: execd_client::Client) -> Result<(), execd_client::Error> {
    /// for session in client.sessions().await? {
    ///     println!("{} running {:?}", session.session_id, session.running);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        let (_, body) = self
            .transport()
            .call(Method::GET, "/session", None, Subject::None)
            .await?;
        Ok(json::<SessionList>(&body)?.sessions)
    }

    /// `DELETE /session/{id}`: ends the session and its running run.
    ///
    /// ```no_run
    /// # async fn example(client: execd_client::Client) -> Result<(), execd_client::Error> {
    /// client.session_delete("7c1e...").await?;
    /// # Ok(()) }
    /// ```
    pub async fn session_delete(&self, session: &str) -> Result<()> {
        let path = format!("/session/{}", encode(session));
        self.transport()
            .call(Method::DELETE, &path, None, Subject::Session(session))
            .await
            .map(drop)
    }
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::Protocol(format!(
            "the body is not the expected JSON ({e}): {:.200}",
            String::from_utf8_lossy(body)
        ))
    })
}

/// A fresh `Idempotency-Key`: a random UUID (version 4).
fn idempotency_key() -> String {
    let bits: u128 = rand::random();
    // Version 4 and the RFC 4122 variant.
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod key_tests {
    #[test]
    fn keys_are_version_4_uuids() {
        let key = super::idempotency_key();
        assert_eq!(key.len(), 36, "{key}");
        assert_eq!(&key[14..15], "4", "{key}");
        assert!(matches!(&key[19..20], "8" | "9" | "a" | "b"), "{key}");
        assert_ne!(key, super::idempotency_key());
    }
}
