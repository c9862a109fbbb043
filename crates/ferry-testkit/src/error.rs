//! The test kit's one error type. Every variant names what failed (the program, the port, the
//! path, the function, the jump box) and keeps the operating system's error as its source; the
//! logs of a part that did not come up are part of the message, since a test prints it with
//! `unwrap`/`expect` and nothing else.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a part of the local cloud could not be started, reached or used.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// A bounded wait ran out: `what` was not ready within `limit`.
    #[error("{what} not ready after {limit:?}{}", log_tail(log))]
    Timeout {
        /// What was waited for (`sshd`, `moto_server`, `ferry-build init`).
        what: String,
        /// How long it was given.
        limit: Duration,
        /// The part's log at that moment (empty when there is none to show).
        log: String,
    },
    /// A program or file the kit needs is not installed.
    #[error("{} missing: {hint}", path.display())]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
        /// What to run to install it.
        hint: &'static str,
    },
    /// A private temporary directory could not be created.
    #[error("creating a temporary directory: {source}")]
    TempDir {
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A local file or directory could not be created, read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, as a verb (`creating`, `writing`, `opening`).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The program (its path or name).
        program: String,
        /// The error of spawning it.
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("{program} failed ({status}): {stderr}")]
    CommandFailed {
        /// What was run (`ssh-keygen`, `sshd -t`, `python setup`).
        program: String,
        /// How it ended.
        status: ExitStatus,
        /// Its standard error output.
        stderr: String,
    },
    /// A server process ended right after it was started.
    #[error("{program} exited at start; its output ({}):\n{output}", log.display())]
    Exited {
        /// The server (`moto`).
        program: &'static str,
        /// Its log file.
        log: PathBuf,
        /// The log's contents.
        output: String,
    },
    /// A loopback listener could not be opened.
    #[error("listening on 127.0.0.1 for the {what}: {source}")]
    Listen {
        /// What the listener is for (`Lambda Invoke API`, `runtime API of ferry-build`).
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Talking HTTP to a loopback server failed at `step`.
    #[error("HTTP to 127.0.0.1:{port}: {step}: {source}")]
    Http {
        /// The server's loopback port.
        port: u16,
        /// `connecting`, `sending` or `reading`.
        step: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A loopback server's answer is not HTTP.
    #[error("127.0.0.1:{port} answered, but not HTTP: {start}")]
    NotHttp {
        /// The server's loopback port.
        port: u16,
        /// The answer's first 80 characters.
        start: String,
    },
    /// A server answered an HTTP request with a status other than the one expected.
    #[error("{what} answered {status}: {body}")]
    HttpStatus {
        /// The request (`moto reset-auth`).
        what: &'static str,
        /// The HTTP status received.
        status: u16,
        /// The answer's body.
        body: String,
    },
    /// A setup script printed something that is not the JSON expected.
    #[error("{what} output is not JSON ({source}): {output}")]
    SetupOutput {
        /// Which script (`jumpbox_setup.py`).
        what: &'static str,
        /// What it printed.
        output: String,
        /// The JSON parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// [`crate::lambda_host::LambdaHost`]: no function of that name is hosted.
    #[error("function {function} is not hosted")]
    NotHosted {
        /// The name asked for.
        function: String,
    },
    /// [`crate::lambda_host::LambdaHost`]: a function's binary is not a regular file.
    #[error("{function}: {} is not a file", binary.display())]
    NotAFile {
        /// The function's name.
        function: String,
        /// The path given as its `bootstrap`.
        binary: PathBuf,
    },
    /// [`crate::jumpbox::Jumpbox`]: the AMI's first boot ended without its sshd answering.
    #[error("the jump box's first boot failed\n{logs}")]
    BootFailed {
        /// The box's init, user-data and sshd logs.
        logs: String,
    },
    /// [`crate::jumpbox::Jumpbox`]: the user data exited non-zero.
    #[error("user data exited with {rc:?}\n{logs}")]
    UserData {
        /// Its exit code, as the box recorded it.
        rc: String,
        /// The box's init, user-data and sshd logs.
        logs: String,
    },
    /// [`crate::jumpbox::Jumpbox`]: the box (its PID namespace) ended before it was ready.
    #[error("jump box ended\n{logs}")]
    BoxEnded {
        /// The box's init, user-data and sshd logs.
        logs: String,
    },
    /// [`crate::jumpbox::Jumpbox`]: the box is not running, or has no init process to enter.
    #[error("the box is not running ({why})")]
    BoxNotRunning {
        /// What was found instead (`no process`, `no init process`).
        why: &'static str,
    },
    /// [`crate::jumpbox::Jumpbox::fire_timer`]: entering the box to run the timer failed.
    #[error("firing {unit}: {status} {stderr}")]
    TimerFailed {
        /// The timer's unit name.
        unit: String,
        /// How `nsenter` ended.
        status: ExitStatus,
        /// Its standard error output.
        stderr: String,
    },
    /// [`crate::jumpbox::Jumpbox::fire_timer`]: the timer left no exit code.
    #[error("timer {unit} did not run (already fired?)")]
    TimerDidNotRun {
        /// The timer's unit name.
        unit: String,
        /// The error of reading its exit-code file.
        #[source]
        source: std::io::Error,
    },
}

fn log_tail(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("; log:\n{log}")
    }
}

impl KitError {
    /// A server (moto, sshd, a jump box's sshd) ended because its port was taken between the
    /// pick and its bind: "Address already in use" (sshd), "Port … is in use" (moto).
    pub(crate) fn port_taken(&self) -> bool {
        match self {
            KitError::Exited { output, .. } => output.contains("in use"),
            KitError::BootFailed { logs } => logs.contains("in use"),
            _ => false,
        }
    }

    /// This error with `log` shown (a [`KitError::Timeout`] keeps the part's log; any other
    /// error is returned as it is).
    pub fn with_log(self, log: String) -> KitError {
        match self {
            KitError::Timeout { what, limit, .. } => KitError::Timeout { what, limit, log },
            other => other,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> KitError {
        let path = path.into();
        move |source| KitError::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn spawn(
        program: impl std::fmt::Display,
    ) -> impl FnOnce(std::io::Error) -> KitError {
        let program = program.to_string();
        move |source| KitError::Spawn { program, source }
    }

    pub(crate) fn temp_dir(source: std::io::Error) -> KitError {
        KitError::TempDir { source }
    }

    pub(crate) fn listen(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KitError {
        let what = what.into();
        move |source| KitError::Listen { what, source }
    }

    pub(crate) fn failed(program: impl Into<String>, out: &std::process::Output) -> KitError {
        KitError::CommandFailed {
            program: program.into(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
        }
    }
}
