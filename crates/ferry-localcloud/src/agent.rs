//! The AWS-side bookkeeping process (`py/agent.py`): the venv's python with boto3, moto's
//! endpoint and operator credentials, kept running for the daemon's life so the poll loop does
//! not start a python per poll. One JSON line per request and per answer; every answer is
//! awaited with a bound.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_testkit::{Creds, Moto};
use serde_json::{Value, json};

const SCRIPT: &str = include_str!("../py/agent.py");
const ANSWER_LIMIT: Duration = Duration::from_secs(60);

pub struct Agent {
    env: Vec<(String, String)>,
    child: Option<(Child, ChildStdin, mpsc::Receiver<String>)>,
    last_start: Option<Instant>,
}

impl Agent {
    pub fn new(moto: &Moto) -> Agent {
        Agent {
            env: moto.env(),
            child: None,
            last_start: None,
        }
    }

    /// The agent's PID, when it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|(c, _, _)| c.id())
    }

    fn start(&mut self) -> Result<(), String> {
        if let Some(t) = self.last_start
            && t.elapsed() < Duration::from_secs(2)
        {
            return Err("the bookkeeping process stopped; restarting it shortly".into());
        }
        self.last_start = Some(Instant::now());
        let py = Moto::venv().join("bin/python3");
        let mut cmd = Command::new(&py);
        cmd.arg("-c").arg(SCRIPT);
        cmd.env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", py.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the bookkeeping process has no pipes".into());
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        self.child = Some((child, stdin, rx));
        Ok(())
    }

    fn stop_child(&mut self) {
        if let Some((mut c, stdin, _)) = self.child.take() {
            drop(stdin); // EOF: the script's loop ends
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                if !matches!(c.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send one request; the answer's `ok` value, or the error text.
    pub fn call(&mut self, req: Value) -> Result<Value, String> {
        if self.child.is_none() {
            self.start()?;
        }
        let op = req["op"].as_str().unwrap_or("?").to_string();
        let outcome = {
            let Some((_, stdin, rx)) = self.child.as_mut() else {
                return Err("the bookkeeping process is not running".into());
            };
            let line = format!("{req}\n");
            match stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush()) {
                Err(e) => Err(format!("sending {op} to the bookkeeping process: {e}")),
                Ok(()) => match rx.recv_timeout(ANSWER_LIMIT) {
                    Ok(answer) => Ok(answer),
                    Err(_) => Err(format!(
                        "the bookkeeping process gave no answer to {op} within {ANSWER_LIMIT:?}"
                    )),
                },
            }
        };
        let answer = match outcome {
            Ok(a) => a,
            Err(e) => {
                self.stop_child();
                return Err(e);
            }
        };
        let v: Value = serde_json::from_str(&answer)
            .map_err(|e| format!("bookkeeping answer to {op} is not JSON: {e}"))?;
        if let Some(err) = v.get("error") {
            return Err(format!("{op}: {}", err.as_str().unwrap_or_default()));
        }
        Ok(v["ok"].clone())
    }

    pub fn assume_role(&mut self, role_arn: &str, session: &str) -> Result<Creds, String> {
        let v =
            self.call(json!({"op": "assume_role", "role_arn": role_arn, "session": session}))?;
        let s = |k: &str| v[k].as_str().map(str::to_string);
        Ok(Creds {
            access_key_id: s("AccessKeyId").ok_or("AssumeRole: no AccessKeyId")?,
            secret_access_key: s("SecretAccessKey").ok_or("AssumeRole: no SecretAccessKey")?,
            session_token: s("SessionToken"),
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop_child();
    }
}
