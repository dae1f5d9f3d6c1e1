//! The `keyreg` binary: parse the command line, set up logging, run.

fn main() -> std::process::ExitCode {
    keyreg::cli::main()
}
