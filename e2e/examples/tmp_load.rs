use std::time::Duration;
fn main() {
    let url = std::env::args().nth(1).unwrap();
    let keep = std::env::args().nth(2).is_none();
    let mut load = ballast_e2e::load::Load::new(&url).rate(200).duration(Duration::from_secs(8));
    if !keep {
        load = load.no_keep_alive();
    }
    let report = load.start().wait();
    println!("{report}");
}
