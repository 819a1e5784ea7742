//! execdctl: the command line of execd-client. See `execdctl --help`, and
//! the exit status table in `exit.rs`.

mod args;
mod exit;
mod explain;
mod follow;
mod ids;
mod inspect;

use std::process::ExitCode;

use clap::Parser;
use execd_client::{Backoff, Client, Error, Reconnect, Run, shell_quote};

use args::{Cli, Command, Global, RunArgs, SessionCommand};
use follow::Ending;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("execdctl: cannot start: {error}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let ending = runtime.block_on(dispatch(cli.global, cli.command));
    match ending {
        Ending::Status(status) => ExitCode::from(status),
        Ending::Failed((error, url)) => {
            eprintln!("execdctl: {}", explain::explain(&error, &url));
            ExitCode::from(exit::of_error(&error))
        }
    }
}

/// The failure and the URL it happened against, for the message.
type Failure = (Error, String);

/// The id an argument names (see `ids`), or the dispatch's ending.
macro_rules! resolved {
    ($client:expr, $id:expr, $url:expr) => {
        match ids::resolve(&$client, &$id).await {
            Ok(id) => id,
            Err(ids::Unresolved::Ambiguous(message)) => {
                eprintln!("execdctl: {message}");
                return Ending::Status(exit::USAGE);
            }
            Err(ids::Unresolved::Failed(error)) => return Ending::Failed((error, $url.clone())),
        }
    };
}

async fn dispatch(global: Global, command: Command) -> Ending<Failure> {
    let url = global.url.clone();
    let client = match client(&global) {
        Ok(client) => client,
        Err(error) => return Ending::Failed((error, url)),
    };
    // Asked to, wait for a host that is starting (a script that launches
    // the daemon and runs a command at once); by default an unreachable
    // host fails at once, so a wrong --url says so without a minute's wait.
    if let Some(bound) = global.retry_for
        && let Err(error) = inspect::until_up(&client, &url, bound).await
    {
        return Ending::Failed((error, url));
    }
    let json = global.json;
    let done = |result: Result<(), Error>| match result {
        Ok(()) => Ending::Status(0),
        Err(error) => Ending::Failed((error, url.clone())),
    };
    let streamed = |ending: follow::Ending| match ending {
        follow::Ending::Status(status) => Ending::Status(status),
        follow::Ending::Failed(error) => Ending::Failed((error, url.clone())),
    };
    // Ids may be given as a prefix of one command's.
    let command = match command {
        Command::Status { id } => Command::Status {
            id: resolved!(client, id, url),
        },
        Command::Logs { id, cursor, follow } => Command::Logs {
            id: resolved!(client, id, url),
            cursor,
            follow,
        },
        Command::Kill { id } => Command::Kill {
            id: resolved!(client, id, url),
        },
        Command::Attach(mut attach) => {
            attach.id = resolved!(client, attach.id, url);
            Command::Attach(attach)
        }
        other => other,
    };
    match command {
        Command::Run(run) => streamed(run_command(&client, run.session.clone(), run, json).await),
        Command::Session(SessionCommand::Run { id, run }) => {
            streamed(run_command(&client, Some(id), run, json).await)
        }
        Command::Attach(attach) => streamed(match client.attach(&attach.id, attach.from).await {
            Ok(events) => follow::follow(&client, events, json, attach.interrupt).await,
            Err(error) => follow::Ending::Failed(error),
        }),
        Command::Status { id } => done(inspect::status(&client, &id, json).await),
        Command::Logs { id, cursor, follow } => {
            match inspect::logs(&client, &id, cursor, follow, json, global.retry_for()).await {
                Ok(status) => Ending::Status(status),
                Err(error) => Ending::Failed((error, url)),
            }
        }
        Command::Kill { id } => done(client.interrupt(&id).await.map(|()| {
            say(json, serde_json::json!({ "interrupted": id }), || {
                format!("interrupted {id} (SIGTERM to its process group, SIGKILL in 3 s)")
            })
        })),
        Command::Ps => done(inspect::ps(&client, json).await),
        Command::Ping => done(client.ping().await.map(|()| {
            say(json, serde_json::json!({ "up": url }), || {
                format!("{url} is up and accepts this client")
            })
        })),
        Command::Session(SessionCommand::New { cwd }) => done(
            async {
                let id = client.session_new(cwd.as_deref()).await?;
                if json {
                    println!("{}", serde_json::json!({ "session_id": id }));
                } else {
                    println!("{id}");
                }
                Ok(())
            }
            .await,
        ),
        Command::Session(SessionCommand::Ls) => done(inspect::sessions(&client, json).await),
        Command::Session(SessionCommand::Rm { id }) => done(client.session_delete(&id).await),
    }
}

/// The one line a command that succeeded prints: `json` as JSON, or the
/// sentence.
fn say(json: bool, value: serde_json::Value, sentence: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", sentence());
    }
}

/// `run` and `session run`: start, then follow (or print the id for --bg).
async fn run_command(
    client: &Client,
    session: Option<String>,
    args: RunArgs,
    json: bool,
) -> follow::Ending {
    // Sent as shell text either way: the words quoted, so they mean what
    // an argv would, on any host (execd itself has no `argv` field).
    let text = if args.shell {
        args.argv.join(" ")
    } else {
        args.argv
            .iter()
            .map(|word| shell_quote(word))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut run = Run::shell(text);
    if let Some(cwd) = &args.cwd {
        run = run.cwd(cwd);
    }
    for (key, value) in &args.envs {
        run = run.env(key, value);
    }
    if let Some(timeout) = args.timeout {
        run = run.timeout(timeout);
    }
    if let Some(uid) = args.uid {
        run = run.uid(uid);
    }
    if let Some(gid) = args.gid {
        run = run.gid(gid);
    }
    let started = match &session {
        Some(session) => {
            if args.bg || !args.envs.is_empty() || args.uid.is_some() {
                eprintln!(
                    "execdctl: a session run takes no --bg, --env, --uid or --gid (set them in the session itself)"
                );
                return follow::Ending::Status(exit::USAGE);
            }
            client.session_run(session, run).await
        }
        None => client.run(run.background(args.bg)).await,
    };
    match started {
        Ok(events) if args.bg => follow::spawned(events, json).await,
        Ok(events) => follow::follow(client, events, json, args.interrupt).await,
        Err(error) => follow::Ending::Failed(error),
    }
}

fn client(global: &Global) -> Result<Client, Error> {
    let mut builder = Client::builder(global.url.clone())
        .backoff(Backoff::default().max_elapsed(global.retry_for()));
    if let Some(token) = &global.token {
        builder = builder.token(token.clone());
    }
    if let Some(framing) = global.framing {
        builder = builder.framing(framing);
    }
    if global.verbose {
        builder = builder.on_reconnect(report);
    }
    builder.build()
}

/// `-v`: one stderr line per reconnection attempt.
fn report(r: &Reconnect<'_>) {
    let delay =
        humantime::format_duration(std::time::Duration::from_millis(r.delay.as_millis() as u64));
    if matches!(r.cause, Error::Api { status: 409, .. }) {
        eprintln!(
            "execdctl: another reader holds {} (the host's exclusive policy); retrying in {delay} (attempt {})",
            r.command_id, r.attempt
        );
    } else {
        eprintln!(
            "execdctl: connection lost ({}); resuming {} after event {} in {delay} (attempt {})",
            r.cause, r.command_id, r.after_eid, r.attempt
        );
    }
}
