//! The `trackly-sim` binary: where its logs go and how it reports a failed start.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// Time the binary may take to start listening or to fail.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts the binary with `--listen`, the demo seed and `RUST_LOG=info`, with stdout and stderr
/// piped, so stderr is not a terminal.
fn spawn_binary(listen: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_trackly-sim"))
        .args(["--listen", listen])
        .env("RUST_LOG", "info")
        .env_remove("TRACKLY_SIM_SEED")
        .env_remove("TRACKLY_SIM_LISTEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the trackly-sim binary starts")
}

/// Sends each stderr line of the child to the returned channel, from a reader thread.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn read_stdout(child: &mut Child) -> String {
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_string(&mut stdout)
        .expect("stdout is readable");
    stdout
}

/// Waits for the child to exit, killing it after [`START_TIMEOUT`].
fn wait_with_timeout(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn logs_go_to_stderr_without_colours() {
    let mut child = spawn_binary("127.0.0.1:0");
    let lines = stderr_lines(&mut child);

    let mut seen = Vec::new();
    let deadline = Instant::now() + START_TIMEOUT;
    let listening = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains("Trackly simulator listening");
                seen.push(line);
                if found {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let stdout = read_stdout(&mut child);

    let stderr = seen.join("\n");
    assert!(
        listening,
        "no listening line on stderr within {START_TIMEOUT:?}:\n{stderr}"
    );
    assert!(
        stderr.contains("127.0.0.1:"),
        "the address is not logged:\n{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "stderr is not a terminal but has escape codes:\n{stderr:?}"
    );
    assert_eq!(stdout, "", "the binary wrote to stdout");
}

#[tokio::test]
async fn used_port_fails_with_advice() {
    let sim = start().await;
    let addr = sim.addr().to_string();

    let mut child = spawn_binary(&addr);
    let status = wait_with_timeout(&mut child);
    let stdout = read_stdout(&mut child);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .expect("stderr is readable");

    let status =
        status.unwrap_or_else(|| panic!("still running after {START_TIMEOUT:?}:\n{stderr}"));
    assert!(!status.success(), "exited with {status}:\n{stderr}");
    assert!(
        stderr.contains(&format!("failed to bind the simulator to {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("127.0.0.1:0"), "{stderr}");
    assert_eq!(stdout, "", "the binary wrote to stdout");
}
