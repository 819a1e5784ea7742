//! A bash session for the program that embeds the host: what the
//! `/session` routes do, through the same [`Sessions`](crate::session::Sessions).

use super::{Execution, Host};
use crate::error::SessionError;
use crate::session::{NewSession, SessionRun};

/// A bash session ([`Host::session`]): runs one command at a time, each
/// starting with the exported variables and the working directory the
/// one before left. Each run is a command like any other, an
/// [`Execution`] with its own id, events and status.
///
/// Dropping the handle leaves the session in place (as a client that
/// goes away does): it lasts until [`Session::delete`] or the host's
/// shutdown.
#[derive(Clone)]
pub struct Session {
    id: String,
    host: Host,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Creates a bash session, as `POST /session` does (the host needs
    /// bash: [`SessionError::NoBash`] otherwise;
    /// [`SessionError::ShuttingDown`] once [`Host::shutdown`] has begun).
    ///
    /// ```
    /// use execd_host::{Ending, Event, Host, NewSession};
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let host = Host::builder().policy("ring").build().await?;
    /// let session = host.session(NewSession::default().cwd("/tmp"))?;
    ///
    /// let first = session.run("export GREETING=hello; cd /").await?;
    /// assert_eq!(first.wait().await, Ending::Exited(0));
    /// // The next run starts where the first left off.
    /// let second = session.run("echo \"$GREETING from $PWD\"").await?;
    /// let mut lines = Vec::new();
    /// let mut events = second.events(0).await?;
    /// while let Some(event) = events.next().await {
    ///     if let Event::Lines(batch) = event {
    ///         lines.extend(batch.into_iter().map(|l| l.text));
    ///     }
    /// }
    /// assert_eq!(lines, ["hello from /"]);
    ///
    /// session.delete()?;
    /// host.shutdown(std::time::Duration::from_secs(3)).await;
    /// # Ok(()) }
    /// ```
    pub fn session(&self, new: NewSession) -> Result<Session, SessionError> {
        if !self.is_accepting() {
            return Err(SessionError::ShuttingDown);
        }
        if let Some(cwd) = &new.cwd
            && !cwd.is_dir()
        {
            return Err(SessionError::Invalid(format!(
                "`cwd` {cwd:?} is not an existing directory"
            )));
        }
        let id = self.shared.app.sessions.create(new)?;
        Ok(Session {
            id,
            host: self.clone(),
        })
    }
}

impl Session {
    /// Its id (`session-` and 32 hex digits), the same as over HTTP.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs shell text in the session, as `POST /session/{id}/run` does:
    /// [`SessionError::Busy`] while a run is still going on in it.
    pub async fn run(&self, run: impl Into<SessionRun>) -> Result<Execution, SessionError> {
        let run = run.into();
        if let Some(cwd) = &run.cwd
            && !cwd.is_dir()
        {
            return Err(SessionError::Invalid(format!(
                "`cwd` {cwd:?} is not an existing directory"
            )));
        }
        let app = &self.host.shared.app;
        let (request, claim) = app.sessions.prepare(&self.id, run)?;
        let (command, _) = app.registry.start(request, None).await?;
        claim.started(&command, &app.registry);
        Ok(self.host.execution(command))
    }

    /// Deletes it, as `DELETE /session/{id}` does: its run, if one is
    /// going on, is interrupted (SIGTERM, then SIGKILL), and its saved
    /// state removed.
    pub fn delete(&self) -> Result<(), SessionError> {
        let app = &self.host.shared.app;
        app.sessions.delete(&self.id, &app.registry)
    }
}
