//! Prints the PromQL of every question `egi-accounting` asks, one per line, in the order it
//! asks them (pods, running, annotations, images, CPU requests, then the usage questions):
//! for comparison scripts that time the same queries with curl.
//!
//! ```text
//! accounting-queries --range 24h --filter "pod=~'jupyter-.*'"
//! ```

use anyhow::Result;
use clap::Parser;
use egi_accounting::metrics::{Filter, LookBack, Timestamp, Usage, Window};
use egi_accounting::query::{Question, promql};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(about = "Prints the PromQL of every egi-accounting question, one per line")]
struct Args {
    /// Look-back range.
    #[arg(long, default_value = "24h")]
    range: String,
    /// Label matchers applied to every question.
    #[arg(long, default_value = Filter::DEFAULT)]
    filter: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let window = Window {
        at: Timestamp::from_millis(0),
        range: LookBack::parse(&args.range)?,
        filter: Filter::new(args.filter)?,
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
    Ok(())
}
