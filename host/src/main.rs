//! The `panther-host` binary: everything lives in the library's [`cli`](panther_host::cli).

fn main() -> std::process::ExitCode {
    panther_host::cli::main()
}
