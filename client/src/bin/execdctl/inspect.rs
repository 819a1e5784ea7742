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
    let header = ["ID", "STATE", "EVENTS", "STARTED", "COMMAND"].map(String::from);
    let mut widths = [0; 4];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:>w2$}  {:w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    }
    Ok(())
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
