//! What the run needs from the cloud ([`Cloud`]: a jump box, the way to its gate, its
//! removal), and the real one ([`AwsCloud`]: ferry-build and ferry-clean through the Lambda
//! client, the gate over SSH through `ferry-remote`).

use crate::config::CloudPlan;
use crate::error::{Context, Error};
use crate::lambda::{Functions, Session};
use ferry_repo::storage::{Storage, StorageError};
use std::path::Path;
use std::time::Duration;

/// What the run needs from the cloud. [`AwsCloud`] is the real one
/// (ferry-build and ferry-clean through Lambda, the jump box's gate over SSH).
pub trait Cloud: Send + Sync {
    /// The function that builds jump boxes (named in messages).
    fn build_function(&self) -> &str;
    /// The function that removes them (named in messages).
    fn clean_function(&self) -> &str;
    /// A jump box that accepts `public_key` for `site`.
    fn build(&self, site: &str, public_key: &str) -> Result<Session, Error>;
    /// Remove the jump box of `session`; [`Error::Timeout`] without an answer `within`.
    /// Called from any thread (an interrupt cleans from the caller's signal thread).
    fn clean(&self, session: &str, within: Duration) -> Result<(), Error>;
    /// How long [`Cloud::connect`] keeps trying while the box boots.
    fn connect_timeout(&self) -> Duration;
    /// The session's gate, reached with the session's client key and pinned host key.
    fn connect(
        &self,
        session: &Session,
        site: &str,
        identity: &Path,
        host_key: &Path,
    ) -> Result<Box<dyn Gate>, Error>;
}

/// The upload target of a session: a storage that is closed (and confirmed) at the end.
pub trait Gate: Storage {
    /// Wait for everything sent to be confirmed, and end the session.
    fn close(&self) -> Result<(), StorageError>;
}

/// The real cloud of a run: ferry-build and ferry-clean through Lambda (a runtime of its own
/// per call, so the signal handler's thread can clean too), the jump box's gate over SSH.
#[derive(Clone, Debug)]
pub struct AwsCloud {
    plan: CloudPlan,
    ssh_debug: bool,
}

impl AwsCloud {
    /// `ssh_debug`: ssh logs its own debug lines (`LogLevel=DEBUG1`) into ours.
    pub fn new(plan: CloudPlan, ssh_debug: bool) -> AwsCloud {
        AwsCloud { plan, ssh_debug }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

impl Cloud for AwsCloud {
    fn build_function(&self) -> &str {
        &self.plan.build_function
    }

    fn clean_function(&self) -> &str {
        &self.plan.clean_function
    }

    fn build(&self, site: &str, public_key: &str) -> Result<Session, Error> {
        runtime()?.block_on(async {
            Functions::new(&self.plan)
                .await
                .build(site, public_key)
                .await
        })
    }

    fn clean(&self, session: &str, within: Duration) -> Result<(), Error> {
        let r = runtime()?.block_on(async {
            let f = Functions::new(&self.plan).await;
            tokio::time::timeout(within, f.clean(session)).await
        });
        r.unwrap_or_else(|_| {
            Err(Error::Timeout {
                function: self.plan.clean_function.clone(),
                secs: within.as_secs(),
            })
        })
    }

    fn connect_timeout(&self) -> Duration {
        self.plan.connect_timeout
    }

    fn connect(
        &self,
        session: &Session,
        site: &str,
        identity: &Path,
        host_key: &Path,
    ) -> Result<Box<dyn Gate>, Error> {
        let mut opts = ferry_remote::GateOptions::new(identity, host_key);
        opts.session = Some(session.session.clone());
        opts.ssh_config = self.plan.ssh_config.clone();
        // A new box refuses us for a while (sshd first runs with the AMI's own host keys and
        // without the session's key): retry everything but a gate refusal until
        // connect_timeout, 1 s doubling to at most 5 s between attempts.
        opts.attempts = 1000;
        opts.backoff = Duration::from_secs(1);
        opts.max_backoff = Duration::from_secs(5);
        opts.retry_budget = self.plan.connect_timeout;
        opts.ssh_debug = self.ssh_debug;
        let host = if session.host.contains(':') {
            format!("[{}]", session.host)
        } else {
            session.host.clone()
        };
        let url = format!("gate+ssh://{}@{host}:{}/{site}", session.user, session.port);
        let gate = ferry_remote::GateStorage::connect(&url, &opts).with_context(|| {
            format!("connecting to the jump box of session {}", session.session)
        })?;
        Ok(Box::new(gate))
    }
}

impl Gate for ferry_remote::GateStorage {
    fn close(&self) -> Result<(), StorageError> {
        ferry_remote::GateStorage::close(self)
    }
}
