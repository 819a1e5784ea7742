//! Following a command's stream in a terminal: stdout to stdout, stderr to
//! stderr, a gap as one clear stderr line, Ctrl-C forwarded as an
//! interrupt (or a detach), and the command's status as the exit status.

use std::io::Write;

use execd_client::{Client, Error, Event, EventStream, Gap};

use crate::args::InterruptArgs;
use crate::exit;

/// What became of a subcommand: an exit status, or a client-side
/// failure (`E`: the error, with whatever its message needs).
pub enum Ending<E = Error> {
    /// Exit with this status.
    Status(u8),
    /// A client-side failure.
    Failed(E),
}

/// Prints the stream's events until its end and returns the exit status.
pub async fn follow(
    client: &Client,
    mut events: EventStream,
    json: bool,
    interrupt: InterruptArgs,
) -> Ending {
    let mut ctrl_c = CtrlC::new();
    // An interrupt asked for before the host named the command waits for
    // its id.
    let mut interrupt_pending = false;
    let mut interrupted = false;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = ctrl_c.recv() => {
                if interrupt.detach_on_interrupt || interrupted {
                    detach_note(&events);
                    return Ending::Status(exit::DETACHED);
                }
                interrupted = true;
                match events.command_id() {
                    Some(id) => send_interrupt(client, id).await,
                    None => interrupt_pending = true,
                }
                continue;
            }
        };
        let event = match event {
            None => {
                return Ending::Failed(Error::Protocol(
                    "the stream ended without the command's exit status".into(),
                ));
            }
            Some(Err(error)) => return Ending::Failed(error),
            Some(Ok(event)) => event,
        };
        if let Event::Started { command_id } = &event
            && interrupt_pending
        {
            interrupt_pending = false;
            send_interrupt(client, command_id).await;
        }
        let printed = if json {
            serde_json::to_string(&event).is_ok_and(|line| write_out(&format!("{line}\n")))
        } else {
            print(&event)
        };
        if !printed {
            return Ending::Status(exit::STDOUT_CLOSED);
        }
        if let Event::Exit(end) = &event {
            if !json && let Some(note) = exit::note(end) {
                eprintln!("{note}");
            }
            return Ending::Status(exit::of_exit(end));
        }
    }
}

/// Prints an event for a person; false once stdout is closed.
fn print(event: &Event) -> bool {
    match event {
        Event::Stdout(line) => write_out(&line.as_written()),
        Event::Stderr(line) => {
            // A closed stderr is no reason to stop the command's stdout.
            let _ = std::io::stderr()
                .lock()
                .write_all(line.as_written().as_bytes());
            true
        }
        Event::Gap(gap) => {
            eprintln!("execdctl: {}", gap_line(gap));
            true
        }
        _ => true,
    }
}

/// A background run's stream: print the id once the host names it.
pub async fn spawned(mut events: EventStream, json: bool) -> Ending {
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Started { command_id }) => {
                let line = if json {
                    serde_json::json!({ "type": "started", "command_id": command_id }).to_string()
                } else {
                    command_id
                };
                return Ending::Status(if write_out(&format!("{line}\n")) {
                    0
                } else {
                    exit::STDOUT_CLOSED
                });
            }
            Ok(_) => {}
            Err(error) => return Ending::Failed(error),
        }
    }
    Ending::Failed(Error::Protocol(
        "the host's answer did not name the command".into(),
    ))
}

/// The one stderr line a gap gets.
pub fn gap_line(gap: &Gap) -> String {
    let bytes = gap
        .dropped_bytes
        .map(|b| format!(", {b} bytes"))
        .unwrap_or_default();
    let reason = gap.reason.as_deref().unwrap_or("not given by the host");
    format!(
        "output lost: events {}-{} ({} events{bytes}) were dropped by the host before they could be read; reason: {reason}",
        gap.from_eid,
        gap.to_eid,
        gap.events()
    )
}

async fn send_interrupt(client: &Client, id: &str) {
    if let Err(error) = client.interrupt(id).await {
        eprintln!(
            "execdctl: could not interrupt {id}: {}",
            crate::explain::explain(&error, client.url())
        );
    }
}

fn detach_note(events: &EventStream) {
    match events.command_id() {
        Some(id) => eprintln!(
            "execdctl: detached; {id} may still be running. Follow it again with: execdctl attach {id} --from {}",
            events.last_eid()
        ),
        None => eprintln!(
            "execdctl: detached before the host named the command; it may still be running (see execdctl ps)"
        ),
    }
}

/// Writes to stdout; false once stdout is closed (e.g. piped into `head`).
fn write_out(text: &str) -> bool {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_ok()
}

/// Ctrl-C presses, as a future per press; never ready when the handler
/// cannot be installed (then Ctrl-C keeps its default: end execdctl).
struct CtrlC {
    signal: Option<tokio::signal::unix::Signal>,
}

impl CtrlC {
    fn new() -> CtrlC {
        CtrlC {
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok(),
        }
    }

    async fn recv(&mut self) {
        match &mut self.signal {
            Some(signal) => {
                if signal.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}
