fn main() {
    std::process::exit(steward::cli::main());
}
