//! Prints the verdict for each argument: `cargo run -p herd-policy --example classify -- 'rm -rf /'`.
fn main() {
    for cmd in std::env::args().skip(1) {
        let v = herd_policy::classify(&cmd);
        println!("{:<9} {cmd}", v.class.as_str());
        for r in &v.reasons {
            println!("          {:<9} {} — {}", r.class.as_str(), r.what, r.why);
        }
    }
}
