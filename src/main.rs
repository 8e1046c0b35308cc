fn main() -> std::process::ExitCode {
    tracker_gitops::cli::main()
}
