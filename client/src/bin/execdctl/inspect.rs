//! The subcommands that look at commands: status, ps, logs.

use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

use execd_client::{Backoff, Client, CommandInfo, Error, Status};

/// How often `logs --follow` asks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// `execdctl status ID`.
pub async fn status(client: &Client, id: &str, json: bool) -> Result<(), Error> {
    let status = client.status(id).await?;
    if json {
        println!("{}", serde_json::to_string(&status).unwrap_or_default());
        return Ok(());
    }
    println!("id:        {}", status.id);
    println!("command:   {}", status.content);
    println!("state:     {}", state(&status));
    println!("started:   {}", status.started_at);
    if let Some(finished) = &status.finished_at {
        println!("finished:  {finished}");
    }
    Ok(())
}

/// A status in a few words: `running`, `exited 0`, `signal: killed`.
fn state(status: &Status) -> String {
    match (status.running, status.exit_code, &status.error) {
        (true, _, _) => "running".into(),
        (false, Some(-1), Some(error)) => error.clone(),
        (false, Some(code), _) => format!("exited {code}"),
        (false, None, Some(error)) => error.clone(),
        (false, None, None) => "finished".into(),
    }
}

/// `execdctl ps`.
pub async fn ps(client: &Client, json: bool) -> Result<(), Error> {
    let commands = client.list().await?;
    let mut out = std::io::stdout().lock();
    if json {
        for command in &commands {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(command).unwrap_or_default()
            );
        }
        return Ok(());
    }
    let rows: Vec<[String; 5]> = commands.iter().map(row).collect();
    table(["ID", "STATE", "EVENTS", "STARTED", "COMMAND"], &rows, &[2]);
    Ok(())
}

/// `execdctl session ls`: the host's sessions, oldest first.
pub async fn sessions(client: &Client, json: bool) -> Result<(), Error> {
    let sessions = client.sessions().await?;
    if json {
        let mut out = std::io::stdout().lock();
        for session in &sessions {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(session).unwrap_or_default()
            );
        }
        return Ok(());
    }
    let rows: Vec<[String; 4]> = sessions
        .iter()
        .map(|s| {
            [
                s.session_id.clone(),
                s.running.clone().unwrap_or_else(|| "idle".into()),
                s.created_at.clone(),
                s.cwd.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(["ID", "RUNNING", "CREATED", "CWD"], &rows, &[]);
    Ok(())
}

/// Prints `rows` under `header` in columns two spaces apart, the columns
/// in `right` aligned right, the last one unpadded.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]], right: &[usize]) {
    let header = header.map(String::from);
    let mut widths = [0; N];
    for r in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for r in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else if right.contains(&i) {
                line.push_str(&format!("{cell:>w$}  ", w = widths[i]));
            } else {
                line.push_str(&format!("{cell:w$}  ", w = widths[i]));
            }
        }
        let _ = writeln!(out, "{line}");
    }
}

/// Waits until the host answers `/ping`, for at most `bound`, saying so
/// on stderr once if it does not answer at first. Any answer but an
/// unreachable host ends the wait: the command itself then meets it.
pub async fn until_up(client: &Client, url: &str, bound: Duration) -> Result<(), Error> {
    match client.ping().await {
        Err(Error::Unreachable { .. }) => {}
        _ => return Ok(()),
    }
    eprintln!(
        "execdctl: the host at {url} is not up; trying again for up to {}",
        humantime::format_duration(bound)
    );
    let waited = riding_cuts(bound, || async {
        match client.ping().await {
            Err(error @ Error::Unreachable { .. }) => Err(error),
            _ => Ok(()),
        }
    })
    .await;
    match waited {
        // Told as what it is (exit 241, the host is unreachable), after
        // how long was tried; the first ping counts as an attempt.
        Err(Error::GaveUp {
            attempts,
            elapsed,
            last,
        }) => {
            eprintln!(
                "execdctl: still not up after {} ({} attempts)",
                humantime::format_duration(Duration::from_secs(elapsed.as_secs().max(1))),
                attempts + 1
            );
            Err(*last)
        }
        other => other,
    }
}

/// Runs `call` again after a transient failure, waiting as the streams
/// do between attempts, until it succeeds, fails for good, or a streak of
/// failures has lasted `retry_for`.
async fn riding_cuts<T, F, Fut>(retry_for: Duration, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let backoff = Backoff::default();
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        match call().await {
            Err(error) if error.is_transient() => {
                attempts += 1;
                let elapsed = started.elapsed();
                if elapsed >= retry_for {
                    return Err(Error::GaveUp {
                        attempts,
                        elapsed,
                        last: Box::new(error),
                    });
                }
                tokio::time::sleep(backoff.delay(attempts - 1).min(retry_for - elapsed)).await;
            }
            done => return done,
        }
    }
}

fn row(command: &CommandInfo) -> [String; 5] {
    let mut state = state(&command.status);
    if command.background {
        state.push_str(" (bg)");
    }
    [
        command.status.id.clone(),
        state,
        command.newest_eid.to_string(),
        command.status.started_at.clone(),
        command.status.content.replace('\n', " "),
    ]
}

/// `execdctl logs ID [--cursor B] [--follow]`. A cut connection or a
/// host briefly away is tried again from the same cursor, for at most
/// `retry_for` in one streak, as the event streams do. Returns the exit
/// status: with `--follow`, the command's (as `run` gives it); else 0.
pub async fn logs(
    client: &Client,
    id: &str,
    mut cursor: u64,
    follow: bool,
    json: bool,
    retry_for: Duration,
) -> Result<u8, Error> {
    loop {
        // Whether it still runs is read before the output, so the fetch
        // after it has ended is the last one needed.
        let status = if follow {
            Some(riding_cuts(retry_for, || client.status(id)).await?)
        } else {
            None
        };
        let running = status.as_ref().is_some_and(|s| s.running);
        let logs = riding_cuts(retry_for, || client.logs(id, cursor)).await?;
        if logs.from > cursor {
            eprintln!(
                "execdctl: output lost: bytes {}-{} were dropped by the host (its disk budget) before they could be read",
                cursor,
                logs.from - 1
            );
        }
        let mut out = std::io::stdout().lock();
        let written = if json {
            let line = serde_json::json!({
                "cursor": logs.from,
                "tail": logs.tail,
                "text": String::from_utf8_lossy(&logs.bytes),
            });
            logs.bytes.is_empty() || writeln!(out, "{line}").is_ok()
        } else {
            out.write_all(&logs.bytes)
                .and_then(|()| out.flush())
                .is_ok()
        };
        if !written {
            return Ok(crate::exit::STDOUT_CLOSED);
        }
        cursor = logs.tail;
        if logs.cut {
            // The rest of this answer, at once.
            continue;
        }
        if !running {
            return Ok(status.as_ref().map_or(0, crate::exit::of_status));
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}
