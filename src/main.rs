//! `qlab`: the command line. Parses, calls into the library, maps errors to exit codes.

fn main() {
    println!("qlab {}", env!("CARGO_PKG_VERSION"));
}
