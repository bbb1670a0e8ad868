//! The capabilities the host and the shipped plugins give a meaning to. A capability is a
//! word in a manifest (`Manifest::capability`): the host reads some of them, and
//! `conflicts_with` names them to keep two plugins that cannot share a service apart. Use
//! these constants rather than the words, so that a typo is a compile error; a plugin may
//! still declare words of its own for its own conflicts. Since 1.5.

/// A network environment that runs services as processes of this machine, through the host's
/// command processor: the host checks the services' programs and working directories on this
/// machine before the run.
pub const LOCAL_PROCESSES: &str = "local_processes";
/// A network environment that runs services in containers.
pub const CONTAINERS: &str = "containers";
/// An execution environment that works on services in containers whose images do not have
/// its tool (it carries it in): `doctor`'s matrix shows it in the container columns.
pub const IN_CONTAINERS: &str = "in_containers";
/// A network environment that emulates links (latency, loss, bandwidth).
pub const NETWORK_EMULATION: &str = "network_emulation";
/// Runs the service under valgrind: one valgrind per process.
pub const VALGRIND: &str = "valgrind";
/// Preloads a library into the service (`LD_PRELOAD`), which valgrind would bypass.
pub const LD_PRELOAD: &str = "ld_preload";
/// Traces the service with ptrace: one tracer per process.
pub const PTRACE: &str = "ptrace";
/// Samples the service's processes from outside (`/proc`).
pub const SAMPLER: &str = "sampler";
/// Writes the result of a run.
pub const REPORT: &str = "report";
