//! The `nnirc` binary; everything lives in [`nnirc::cli`].
fn main() -> std::process::ExitCode {
    nnirc::cli::main()
}
