//! `panther-plugin-probe FILE`: opens one plugin file and writes its manifest for the host
//! (see `panther_host::probe`). Ships next to `panther-host`.

fn main() -> std::process::ExitCode {
    panther_host::probe::serve()
}
