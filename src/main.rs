//! The `revbloom` command line (subcommands arrive with the snapshot and publisher work).

fn main() {
    eprintln!("revbloom: no subcommands yet; see README.md");
    std::process::exit(2);
}
