//! The `godwit` binary: parses the command line and runs the command.

fn main() -> std::process::ExitCode {
    godwit::cli::main()
}
