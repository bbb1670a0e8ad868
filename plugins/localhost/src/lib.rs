//! `localhost`: the default network environment. Every service is a local process started
//! through the host's command processor (its own process group, output captured to the
//! results folder), in the order the host deploys them; readiness is checked here; teardown
//! stops whatever still runs, newest first. It needs nothing installed.
//!
//! A TCP readiness check passes only when the listener is the service's own run's (see
//! [`listener`]): a server another run left behind does not make this one ready.

use std::{collections::BTreeMap, time::Duration};

use panther_plugin_api::{
    prelude::*,
    readiness::{describe, tcp_open, Probe, Waited},
};

mod listener;

/// The `[network]` section for `localhost`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How long a service gets between SIGTERM and SIGKILL when it is stopped.
    #[serde(default = "default_grace", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stop_grace: Duration,
}

fn default_grace() -> Duration {
    Duration::from_secs(3)
}

struct Running {
    spec: ServiceSpec,
    handle: ProcessHandle,
}

/// Runs services as local processes.
pub struct Localhost {
    ctx: Context,
    grace: Duration,
    /// In deployment order.
    services: Vec<Running>,
}

impl Plugin for Localhost {
    type Config = Config;

    fn manifest() -> Manifest {
        // `local_processes` tells the host it can check that every program exists.
        // The word, not `capability::LOCAL_PROCESSES`: this plugin is also built against
        // plugin-api 1.0 in the tests, as an older plugin.
        Manifest::new("localhost").capability("local_processes")
    }

    fn new(config: Config, ctx: Context) -> anyhow::Result<Self> {
        Ok(Localhost {
            ctx,
            grace: config.stop_grace,
            services: Vec::new(),
        })
    }
}

impl Localhost {
    fn find(&self, name: &str) -> anyhow::Result<&Running> {
        self.services
            .iter()
            .find(|s| s.spec.name == name)
            .with_context(|| format!("service `{name}` was not deployed"))
    }

    /// Waits until `check` passes, the service exits, the timeout passes or the run is
    /// cancelled.
    fn wait_until(&self, running: &Running, readiness: &Readiness) -> anyhow::Result<()> {
        let mut probe = Probe::new(&running.spec, &readiness.check)?;
        let leader = self.ctx.pid(running.handle)?;
        // A listener that belongs to another run (a leftover server) does not make this
        // service ready.
        let mut foreign: Option<(u16, Vec<u32>)> = None;
        let tcp = |host: &str, port: u16| {
            if !tcp_open(host, port) {
                return Ok(false);
            }
            Ok(match listener::owner(port, leader) {
                listener::Owner::OursOrUnknown => true,
                listener::Owner::Others(pids) => {
                    foreign = Some((port, pids));
                    false
                }
                // The wait asks the status next, and says how it ended.
                listener::Owner::LeaderEnded => false,
            })
        };
        let name = &running.spec.name;
        let waited = probe.wait(&self.ctx, running.handle, name, readiness.timeout, tcp)?;
        if waited == Waited::Ready {
            return Ok(());
        }
        if let Some((port, pids)) = &foreign {
            bail!(
                "service `{name}` was not ready within {:?}: port {port} is held by process(es) {pids:?} of another run or program (`panther-host clean` ends those of killed runs)",
                readiness.timeout,
            );
        }
        bail!(
            "service `{name}` was not ready within {:?} ({})",
            readiness.timeout,
            describe(&readiness.check)
        )
    }
}

impl NetworkEnvironment for Localhost {
    fn setup_environment(&mut self, plan: &DeploymentPlan) -> anyhow::Result<()> {
        tracing::debug!(services = plan.services.len(), run = %plan.run_id, "local environment ready");
        Ok(())
    }

    fn deploy_service(&mut self, service: &ServiceSpec) -> anyhow::Result<Deployment> {
        let command = Command::for_service(service).context("the service has an empty command")?;
        let handle = self
            .ctx
            .spawn(&command)
            .with_context(|| format!("starting service `{}`", service.name))?;
        let pid = self.ctx.pid(handle)?;
        self.services.push(Running {
            spec: service.clone(),
            handle,
        });
        Ok(Deployment {
            pid: Some(pid),
            id: None,
        })
    }

    fn wait_ready(&mut self, service: &str) -> anyhow::Result<()> {
        let running = self.find(service)?;
        match &running.spec.ready {
            Some(readiness) => self.wait_until(running, readiness),
            None => Ok(()),
        }
    }

    fn get_environment_status(&mut self) -> anyhow::Result<EnvironmentStatus> {
        let mut services = BTreeMap::new();
        for s in &self.services {
            services.insert(s.spec.name.clone(), self.ctx.status(s.handle)?);
        }
        Ok(EnvironmentStatus { services })
    }

    fn stop_service(&mut self, service: &str) -> anyhow::Result<ProcessState> {
        let running = self.find(service)?;
        // The host asks for more time when tools wrap the service (valgrind writes its leak
        // report after SIGTERM); never less than configured.
        let grace = running
            .spec
            .stop_grace
            .map_or(self.grace, |g| g.max(self.grace));
        self.ctx.stop(running.handle, grace)
    }

    fn teardown_environment(&mut self) -> anyhow::Result<()> {
        for s in self.services.iter().rev() {
            self.ctx
                .stop(s.handle, self.grace)
                .with_context(|| format!("stopping service `{}`", s.spec.name))?;
        }
        self.services.clear();
        Ok(())
    }
}

export_plugin!(NetworkEnvironment: Localhost);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use panther_plugin_api::{ProcessState, Readiness, ReadyCheck};
    use panther_plugin_test::TestHost;
    use serde_json::json;

    use super::Localhost;

    #[test]
    fn deploys_waits_for_a_log_line_and_stops() {
        let host = TestHost::new();
        let mut env = host
            .network_environment::<Localhost>(json!({ "stop_grace": "1s" }))
            .unwrap();
        let mut server = host.service(
            "server",
            &[
                "/bin/sh",
                "-c",
                "echo starting; sleep 0.2; echo ready now; exec sleep 30",
            ],
        );
        server.ready = Some(Readiness {
            check: ReadyCheck::Log {
                pattern: "^ready".into(),
            },
            timeout: Duration::from_secs(5),
        });
        let deployment = env.deploy_service(&server).unwrap();
        let pid = deployment.pid.expect("a local process has a pid");
        env.wait_ready("server").unwrap();
        assert_eq!(
            env.get_environment_status().unwrap().services["server"],
            ProcessState::Running { pid }
        );
        assert!(matches!(
            env.stop_service("server").unwrap(),
            ProcessState::Signaled { .. }
        ));
        env.teardown_environment().unwrap();
    }

    /// Stopping a service reaches its whole process group, SIGTERM first and SIGKILL once the
    /// grace has passed: a shell that ignores SIGTERM is killed after the grace, and the
    /// child it started goes with it.
    #[test]
    fn stopping_ends_the_service_and_its_group_after_the_grace() {
        let host = TestHost::new();
        let grace = Duration::from_millis(300);
        let mut env = host
            .network_environment::<Localhost>(json!({ "stop_grace": "300ms" }))
            .unwrap();
        let pid_file = host.output_dir().join("child.pid");
        let script = format!(
            "trap '' TERM; sleep 30 & echo $! > {}; wait",
            pid_file.display()
        );
        env.deploy_service(&host.service("server", &["/bin/sh", "-c", &script]))
            .unwrap();
        let child: u32 = wait_for_pid(&pid_file);
        let stopping = std::time::Instant::now();
        assert_eq!(
            env.stop_service("server").unwrap(),
            ProcessState::Signaled { signal: 9 }
        );
        assert!(stopping.elapsed() >= grace, "SIGKILL came before the grace");
        assert!(!is_running(child), "the service's child {child} still runs");
        env.teardown_environment().unwrap();
    }

    fn wait_for_pid(file: &std::path::Path) -> u32 {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pid) = std::fs::read_to_string(file)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                return pid;
            }
            assert!(std::time::Instant::now() < deadline, "no pid in {file:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether `pid` is a live process (an ended one not reaped yet does not count).
    fn is_running(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
                Some(state != "Z" && state != "X")
            })
            .unwrap_or(false)
    }

    #[test]
    fn a_service_that_exits_before_it_is_ready_fails_at_once() {
        let host = TestHost::new();
        let mut env = host.network_environment::<Localhost>(json!({})).unwrap();
        let mut server = host.service("server", &["/bin/sh", "-c", "exit 3"]);
        server.ready = Some(Readiness {
            check: ReadyCheck::Tcp {
                host: "127.0.0.1".into(),
                port: 9,
            },
            timeout: Duration::from_secs(30),
        });
        env.deploy_service(&server).unwrap();
        let started = std::time::Instant::now();
        let err = env.wait_ready("server").unwrap_err();
        assert!(
            err.to_string()
                .contains("service `server` exited with code 3 before it was ready"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
