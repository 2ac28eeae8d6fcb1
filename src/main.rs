fn main() -> std::process::ExitCode {
    mtx_auth::cli::main()
}
