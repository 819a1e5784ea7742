//! Bash sessions (execd's `/session` API), made resumable.
//!
//! execd keeps one bash process per session and feeds it commands; here a
//! session is a directory and a saved state, and each run is a command
//! like any other (its own process group, log, eids, resume, status,
//! DELETE): `bash -c` with a prologue that restores the state the previous
//! run saved, and an EXIT trap that saves it again. The state is the
//! exported variables the session set or changed (inherited ones that a
//! run left as they came are not frozen, so a later `set_env` still
//! reaches the session) and the working directory. The user's stdout and
//! stderr are left alone, so they stay separate events (execd merges
//! them), and the exit code is the user command's, `exit N` included. A run
//! killed by a signal (timeout, DELETE) saves nothing: the session keeps
//! the state of the run before.
//!
//! A session created with `uid`/`gid` runs its bash as that user. Its
//! directory then cannot be in the state directory (the host's user's
//! only): it is a fresh directory of unpredictable name in the system's
//! temp dir, 0700 and owned by that user, so its runs can save their
//! state and no other user's session can read it.
//!
//! This is the domain, typed: [`NewSession`] and [`SessionRun`] in,
//! [`SessionError`] out. The `/session` routes (`http/sessions.rs`) parse
//! their JSON bodies into these; a program that embeds the host builds
//! them ([`Host::session`](crate::Host::session)).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::command::Command;
use crate::error::SessionError;
use crate::exec;
use crate::http::request::{self, RunRequest};
use crate::registry::Registry;
use crate::state_dir::private_dir_builder;

/// Most sessions at once: each holds a directory.
pub const MAX_SESSIONS: usize = 1024;

/// The name of a session's saved state, in its directory.
const STATE_FILE: &str = "state.sh";

/// Runs before the user's command. `$1` is the state file, `$2` the
/// command, `$3` this run's cwd override (may be empty). `builtin`
/// everywhere, and IFS set, because the user's command may redefine
/// anything before the EXIT trap runs.
const PROLOGUE: &str = r#"__execd_state=$1 __execd_cmd=$2 __execd_cwd=$3
set --
declare -A __execd_init
for __execd_n in $(compgen -e); do __execd_init[$__execd_n]=${!__execd_n}; done
if [ -f "$__execd_state" ]; then . "$__execd_state"; fi
__execd_home=$PWD
if [ -n "$__execd_cwd" ]; then builtin cd -- "$__execd_cwd" || builtin exit 1; fi
__execd_there=$PWD
__execd_save() {
    __execd_rc=$?
    local IFS=$' \t\n' __execd_pwd=$PWD
    # A cwd given for one run is for that run only, unless it moved on.
    if [ -n "$__execd_cwd" ] && [ "$PWD" = "$__execd_there" ]; then __execd_pwd=$__execd_home; fi
    {
        for __execd_n in $(builtin compgen -e); do
            case $__execd_n in _|PWD|SHLVL) continue;; esac
            if [ "${__execd_init[$__execd_n]+set}" = set ] \
                && [ "${__execd_init[$__execd_n]}" = "${!__execd_n}" ]; then continue; fi
            builtin declare -p "$__execd_n"
        done
        builtin printf 'builtin cd -- %q 2>/dev/null || builtin echo "execd-host: the session directory is gone:" %q >&2\n' "$__execd_pwd" "$__execd_pwd"
    } 2>/dev/null >"$__execd_state"
    builtin exit "$__execd_rc"
}
trap __execd_save EXIT
# Ended by a signal (DELETE's SIGTERM), a run saves nothing, as one ended
# by SIGKILL cannot: bash dies of the signal it got, without the EXIT trap.
trap 'builtin trap - EXIT TERM; builtin kill -TERM $BASHPID' TERM
unset __execd_n
eval "$__execd_cmd"
"#;

/// Every session the host knows.
pub struct Sessions {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// The next session's place in the listing.
    next_seq: std::sync::atomic::AtomicU64,
    /// Set, with the map locked, when the host removes every session at
    /// its end: a session made after that would leave its directory
    /// behind.
    closed: std::sync::atomic::AtomicBool,
    /// `<state dir>/sessions`, holding one directory per session.
    root: PathBuf,
    /// bash, if there is one: sessions need it.
    bash: Option<PathBuf>,
}

struct Session {
    /// The order sessions are listed in (ids are random).
    seq: u64,
    created_at: std::time::SystemTime,
    dir: PathBuf,
    /// Where its first run starts.
    cwd: Option<PathBuf>,
    /// The user its runs run as (none: the host's).
    uid: Option<u32>,
    gid: Option<u32>,
    run: Mutex<Run>,
}

/// What a session is doing.
enum Run {
    Idle,
    /// A run is being started (its command does not exist yet).
    Starting,
    Running(Arc<Command>),
    /// Deleted: nothing may start.
    Deleted,
}

/// One entry of `GET /session`.
#[derive(serde::Serialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// The id of the run going on now, if one is.
    pub running: Option<String>,
}

/// A session to create, as `POST /session {cwd?, uid?, gid?}` asks for
/// one.
///
/// ```
/// let new = execd_host::NewSession::default().cwd("/tmp");
/// ```
#[derive(Clone, Debug, Default)]
pub struct NewSession {
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
}

impl NewSession {
    /// Where its first run starts (taken as it is: no `~` or `$NAME`
    /// expansion); a run that moves elsewhere takes the session with it.
    /// Default: the host's working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> NewSession {
        self.cwd = Some(dir.into());
        self
    }

    /// Its runs run as this user (and group; default: the user's primary
    /// group), its state in a directory of theirs.
    pub fn user(mut self, uid: u32, gid: Option<u32>) -> NewSession {
        self.uid = Some(uid);
        self.gid = gid;
        self
    }
}

/// A command to run in a session, as `POST /session/{id}/run
/// {command, cwd?, timeout?}` asks: shell text, run by the session's
/// bash as its user. `From` a string for a run with no options.
///
/// ```
/// use std::time::Duration;
/// let run = execd_host::SessionRun::new("make test").timeout(Duration::from_secs(60));
/// ```
#[derive(Clone, Debug)]
pub struct SessionRun {
    pub(crate) command: String,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) timeout: Option<Duration>,
    /// Only a body may name a user, which must be the session's own.
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
}

impl SessionRun {
    /// Shell text, run with the state the session's previous run left.
    pub fn new(command: impl Into<String>) -> SessionRun {
        SessionRun {
            command: command.into(),
            cwd: None,
            timeout: None,
            uid: None,
            gid: None,
        }
    }

    /// Runs in this directory (taken as it is), for this run only unless
    /// the command moves on from it.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> SessionRun {
        self.cwd = Some(dir.into());
        self
    }

    /// SIGKILL to the run after this long. Default: none.
    pub fn timeout(mut self, timeout: Duration) -> SessionRun {
        self.timeout = Some(timeout).filter(|t| !t.is_zero());
        self
    }
}

impl From<&str> for SessionRun {
    fn from(command: &str) -> SessionRun {
        SessionRun::new(command)
    }
}

impl From<String> for SessionRun {
    fn from(command: String) -> SessionRun {
        SessionRun::new(command)
    }
}

fn not_found(id: &str) -> SessionError {
    SessionError::NotFound(id.to_string())
}

fn busy(id: &str) -> SessionError {
    SessionError::Busy(id.to_string())
}

impl Sessions {
    /// Sessions kept under `state_dir`; what a previous host left there is
    /// removed (sessions do not survive the host).
    pub fn new(state_dir: &Path) -> Sessions {
        let root = state_dir.join("sessions");
        let _ = std::fs::remove_dir_all(&root);
        let bash = Some(exec::shell()).filter(|s| s.ends_with("bash"));
        Sessions {
            sessions: Mutex::default(),
            next_seq: std::sync::atomic::AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            root,
            bash,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        self.map().get(id).cloned().ok_or_else(|| not_found(id))
    }

    /// [`SessionError::NotFound`] unless the session exists.
    pub fn check(&self, id: &str) -> Result<(), SessionError> {
        self.get(id).map(drop)
    }

    /// `POST /session`: a new session, its id. Its `cwd` has been checked.
    pub fn create(&self, new: NewSession) -> Result<String, SessionError> {
        if self.bash.is_none() {
            return Err(SessionError::NoBash);
        }
        let mut sessions = self.map();
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(SessionError::ShuttingDown);
        }
        if sessions.len() >= MAX_SESSIONS {
            return Err(SessionError::TooMany(MAX_SESSIONS));
        }
        let id = new_id();
        // The group a uid session runs as, settled now: a run may name it.
        let gid = new.uid.map(|uid| exec::run_gid(uid, new.gid));
        let dir = match new.uid.zip(gid) {
            None => {
                let dir = self.root.join(&id);
                private_dir_builder(true)
                    .create(&dir)
                    .map_err(SessionError::Directory)?;
                dir
            }
            Some((uid, gid)) => user_dir(uid, gid)?,
        };
        sessions.insert(
            id.clone(),
            Arc::new(Session {
                seq: self
                    .next_seq
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                created_at: std::time::SystemTime::now(),
                dir,
                cwd: new.cwd,
                uid: new.uid,
                gid,
                run: Mutex::new(Run::Idle),
            }),
        );
        Ok(id)
    }

    /// `GET /session`: every session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut sessions: Vec<(String, Arc<Session>)> = self
            .map()
            .iter()
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect();
        sessions.sort_by_key(|(_, s)| s.seq);
        sessions
            .into_iter()
            .map(|(session_id, s)| {
                let running = match &*s.lock() {
                    Run::Running(command) if command.status().running => Some(command.id.clone()),
                    _ => None,
                };
                SessionInfo {
                    session_id,
                    created_at: crate::time::rfc3339(s.created_at),
                    cwd: s.cwd.as_ref().map(|c| c.display().to_string()),
                    uid: s.uid,
                    gid: s.gid,
                    running,
                }
            })
            .collect()
    }

    /// `DELETE /session/{id}`: ends its running run (SIGTERM, then SIGKILL,
    /// as `DELETE /command`) and removes its directory.
    pub fn delete(&self, id: &str, registry: &Registry) -> Result<(), SessionError> {
        let session = self.map().remove(id).ok_or_else(|| not_found(id))?;
        let previous = std::mem::replace(&mut *session.lock(), Run::Deleted);
        if let Run::Running(command) = previous {
            registry.interrupt(&command);
        }
        // A run still ending writes its state into a directory that is
        // gone: it fails quietly, which is what a deleted session wants.
        if let Err(e) = std::fs::remove_dir_all(&session.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %session.dir.display(), "cannot remove a session's directory: {e}");
        }
        Ok(())
    }

    /// `POST /session/{id}/run`, up to the command's start: checks the
    /// run (its `cwd` has been checked), claims the session
    /// ([`SessionError::Busy`] while a run is on), and hands back the
    /// command to start and the claim, which [`Claim::started`] completes.
    pub fn prepare(&self, id: &str, run: SessionRun) -> Result<(RunRequest, Claim), SessionError> {
        let session = self.get(id)?;
        let command = request::check_command(run.command)?;
        // A run is its session's user: a session's state is that user's,
        // and one user's state must not be sourced by another's bash.
        if run.uid.is_some_and(|uid| Some(uid) != session.uid)
            || run.gid.is_some_and(|gid| Some(gid) != session.gid)
        {
            return Err(SessionError::Invalid(format!(
                "a session's runs run as its own user ({}); this run asks for uid {} gid {}",
                match session.uid {
                    Some(uid) => format!("uid {uid}"),
                    None => "the host's".to_string(),
                },
                run.uid.map_or("none".to_string(), |u| u.to_string()),
                run.gid.map_or("none".to_string(), |g| g.to_string()),
            )));
        }
        let run_cwd = run.cwd;
        let timeout = run.timeout;
        let bash = self.bash.clone().ok_or(SessionError::NoBash)?;
        {
            let mut run = session.lock();
            match &*run {
                Run::Deleted => return Err(not_found(id)),
                Run::Starting => return Err(busy(id)),
                Run::Running(c) if c.status().running => return Err(busy(id)),
                Run::Idle | Run::Running(_) => *run = Run::Starting,
            }
        }
        let argv = vec![
            bash.to_string_lossy().into_owned(),
            "-c".into(),
            PROLOGUE.into(),
            "execd-session".into(),
            session.dir.join(STATE_FILE).to_string_lossy().into_owned(),
            command.clone(),
            run_cwd
                .as_deref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ];
        let request = RunRequest {
            command,
            argv: Some(argv),
            cwd: session.cwd.clone(),
            background: false,
            timeout,
            uid: session.uid,
            gid: session.gid,
            envs: request::command_env(HashMap::new()),
        };
        Ok((request, Claim(Some(session))))
    }

    /// Removes every session's files (at host exit).
    pub fn remove_all(&self) {
        let mut sessions = self.map();
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for session in sessions.drain().map(|(_, s)| s) {
            if !session.dir.starts_with(&self.root) {
                let _ = std::fs::remove_dir_all(&session.dir);
            }
        }
        drop(sessions);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A session claimed for a run being started; dropped unfinished (the
/// start failed), the session is idle again.
pub struct Claim(Option<Arc<Session>>);

impl Claim {
    /// The run's command started: the session is busy until it ends. A
    /// session deleted meanwhile ends it at once.
    pub fn started(mut self, command: &Arc<Command>, registry: &Registry) {
        let Some(session) = self.0.take() else {
            return;
        };
        let mut run = session.lock();
        if matches!(*run, Run::Deleted) {
            registry.interrupt(command);
        } else {
            *run = Run::Running(Arc::clone(command));
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            let mut run = session.lock();
            if matches!(*run, Run::Starting) {
                *run = Run::Idle;
            }
        }
    }
}

/// A fresh directory for a session run as `uid`:`gid`, in the system's
/// temp dir (which every user can reach), 0700 and theirs. An existing
/// one is never reused: someone else may have made it.
fn user_dir(uid: u32, gid: u32) -> Result<PathBuf, SessionError> {
    let parent = std::env::temp_dir();
    let dir = parent.join(format!("execd-session-{}", crate::registry::new_id()));
    private_dir_builder(false)
        .create(&dir)
        .map_err(SessionError::Directory)?;
    if let Err(source) = std::os::unix::fs::chown(&dir, Some(uid), Some(gid)) {
        let _ = std::fs::remove_dir(&dir);
        return Err(SessionError::Chown { uid, source });
    }
    Ok(dir)
}

/// A new session id: 128 random bits, hex, as a command id is made, but
/// prefixed so it never passes for one.
fn new_id() -> String {
    format!("session-{}", crate::registry::new_id())
}
