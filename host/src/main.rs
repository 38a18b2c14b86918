//! The `godwit` binary: parses the command line and runs the command.

fn main() -> std::process::ExitCode {
    // Test builds only: arms the failpoints named in FAILPOINTS.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    godwit::cli::main()
}
