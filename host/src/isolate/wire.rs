//! The wire format between the host and a plugin server: one JSON object per line.
//!
//! Both sides send [`Frame`]s. A frame with a `call` is a request (answered with a frame
//! carrying the same `id` and a `reply`, unless its id is 0: a notification, e.g. a log
//! record, that needs no answer). Each side numbers its own requests, so an id names a
//! request only together with the side that sent it. Plugin payloads are the JSON text the
//! plugin ABI already uses, carried as strings: the server never interprets them.

use serde::{Deserialize, Serialize};

/// What a call answers: the plugin's (or the host's) text, `None` for calls that return
/// nothing or a named call the other side does not know, or an error message.
pub type Reply = Result<Option<String>, String>;

/// One line of the protocol.
#[derive(Debug, Serialize, Deserialize)]
pub struct Frame<C> {
    /// The request's number; 0 for a notification.
    #[serde(default)]
    pub id: u64,
    /// The request, when this frame is one.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub call: Option<C>,
    /// The answer, when this frame is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
}

fn none<C>() -> Option<C> {
    None
}

/// The plugin type an instance is built as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceKind {
    /// A network environment.
    NetworkEnvironment,
    /// An execution environment.
    ExecutionEnvironment,
    /// A reporter.
    Reporter,
}

/// What the host asks of the plugin instance a server holds: one variant per ABI method.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginCall {
    /// Builds the instance: the first call a server gets.
    New {
        /// Which constructor.
        kind: InstanceKind,
        /// The instance's name (for the in-server identity).
        instance: String,
        /// The configuration, as JSON text.
        config: String,
        /// The instance's output folder (the context's answer, fixed for its life).
        output_dir: String,
        /// The most verbose log level the host prints (fixed for the run).
        max_log_level: u8,
    },
    /// The module's `claims(config)`: needs no instance.
    Claims(String),
    /// The module's `validate` with a [`ValidateRequest`] (JSON): needs no instance.
    ///
    /// [`ValidateRequest`]: panther_plugin_api::__private::ValidateRequest
    Validate(String),
    /// A network environment module's `sites` with a [`ValidateRequest`] (JSON): needs no
    /// instance.
    ///
    /// [`ValidateRequest`]: panther_plugin_api::__private::ValidateRequest
    Sites(String),
    /// `slowdown` (answered as a number in text).
    Slowdown,
    /// `setup_environment(plan)`.
    SetupEnvironment(String),
    /// `deploy_service(service)`.
    DeployService(String),
    /// `wait_ready(service)`.
    WaitReady(String),
    /// `get_environment_status()`.
    GetEnvironmentStatus,
    /// `stop_service(service)`.
    StopService(String),
    /// `teardown_environment()`.
    TeardownEnvironment,
    /// `wrap_command(command)`.
    WrapCommand(String),
    /// `start_monitoring(service, pid)`.
    StartMonitoring(String, u32),
    /// `stop_monitoring(service)`.
    StopMonitoring(String),
    /// `get_monitoring_data(service)`.
    GetMonitoringData(String),
    /// `report(result)`.
    Report(String),
    /// A named call (`call(name, payload)`) of any instance type.
    Named(String, String),
    /// Drops the instance; the server exits after answering.
    Drop,
}

/// What a plugin instance asks of the host: one variant per host-context method that goes
/// over the wire (`output_dir` and `max_log_level` are fixed and sent with
/// [`PluginCall::New`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextCall {
    /// `log(level, target, message)`: a notification.
    Log(u8, String, String),
    /// `emit_event(event)`: a notification.
    EmitEvent(String),
    /// `is_cancelled()` (answered as `"true"` or `"false"`).
    IsCancelled,
    /// `run_command(command)`.
    RunCommand(String),
    /// `spawn(command)` (answered with the handle in text).
    Spawn(String),
    /// `process_id(handle)` (answered with the pid in text).
    ProcessId(u64),
    /// `process_status(handle)`.
    ProcessStatus(u64),
    /// `stop(handle, grace_ms)`.
    Stop(u64, u64),
    /// `call(name, payload)`.
    Named(String, String),
}

/// A frame as one line of text, newline included.
pub fn line<C: Serialize>(frame: &Frame<C>) -> Vec<u8> {
    let mut text = serde_json::to_vec(frame).expect("frames always serialize");
    text.push(b'\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let call = Frame {
            id: 7,
            call: Some(PluginCall::StartMonitoring("server".into(), 42)),
            reply: None,
        };
        let text = line(&call);
        assert_eq!(text.last(), Some(&b'\n'));
        let back: Frame<PluginCall> = serde_json::from_slice(&text).unwrap();
        assert_eq!(back.id, 7);
        assert!(matches!(back.call, Some(PluginCall::StartMonitoring(s, 42)) if s == "server"));

        let reply: Frame<ContextCall> = Frame {
            id: 3,
            call: None,
            reply: Some(Err("no process with handle 9".into())),
        };
        let back: Frame<ContextCall> = serde_json::from_slice(&line(&reply)).unwrap();
        assert!(back.call.is_none());
        assert_eq!(back.reply, Some(Err("no process with handle 9".into())));
    }

    #[test]
    fn payloads_with_newlines_stay_on_one_line() {
        let frame = Frame::<PluginCall> {
            id: 1,
            call: Some(PluginCall::Report("{\n\"a\": \"b\\nc\"\n}".into())),
            reply: None,
        };
        let text = line(&frame);
        assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
