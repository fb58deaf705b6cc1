//! Prints the PromQL of every question `egi-accounting` asks, one per line, in the order it
//! asks them (pods, running, annotations, images, CPU requests, then the usage questions),
//! taken from `egi_accounting::query` so that comparison scripts time exactly those queries.
//!
//! ```text
//! accounting-queries [--range 24h] [--filter "pod=~'jupyter-.*'"]
//! ```

use std::process::ExitCode;

use egi_accounting::metrics::{Filter, LookBack, Timestamp, Usage, Window};
use egi_accounting::query::{Question, promql};

fn main() -> ExitCode {
    let mut range = "24h".to_owned();
    let mut filter = Filter::DEFAULT.to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--range" => &mut range,
            "--filter" => &mut filter,
            _ => {
                eprintln!("usage: accounting-queries [--range RANGE] [--filter MATCHERS]");
                return ExitCode::FAILURE;
            }
        };
        match args.next() {
            Some(value) => *slot = value,
            None => {
                eprintln!("{arg} needs a value");
                return ExitCode::FAILURE;
            }
        }
    }
    let window = match (LookBack::parse(&range), Filter::new(filter)) {
        (Ok(range), Ok(filter)) => Window {
            at: Timestamp::from_millis(0),
            range,
            filter,
        },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let questions = [
        Question::Pods,
        Question::Running,
        Question::Annotations,
        Question::Images,
        Question::CpuRequests,
    ]
    .into_iter()
    .chain(Usage::ALL.map(Question::Usage));
    for question in questions {
        println!("{}", promql(question, &window));
    }
    ExitCode::SUCCESS
}
