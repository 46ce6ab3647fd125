//! The `nudge` command line: parses arguments and calls into the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nudge::config::Config;
use nudge::intents::IntentSet;

#[derive(Parser)]
#[command(name = "nudge", version, about = "Self-hosted conversational marketing server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Work with intent files.
    #[command(subcommand)]
    Intents(IntentsCommand),
    /// Chat with a running server from the terminal.
    Chat {
        #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
        url: String,
        #[arg(long)]
        campaign: Option<String>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML); `./nudge.toml` is read when it exists.
    #[arg(long, env = "NUDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "NUDGE_LISTEN")]
    listen: Option<String>,
    /// Data directory (the embedded store).
    #[arg(long, env = "NUDGE_DATA")]
    data: Option<PathBuf>,
    /// Intents directory.
    #[arg(long, env = "NUDGE_INTENTS")]
    intents: Option<PathBuf>,
    /// Public URL of this server, for links.
    #[arg(long, env = "NUDGE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Extra origins allowed to open the chat socket (comma separated).
    #[arg(long, env = "NUDGE_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Option<Vec<String>>,
}

#[derive(Subcommand)]
enum IntentsCommand {
    /// Validate every intent file and run its examples.
    Check {
        #[arg(default_value = "intents")]
        dir: PathBuf,
    },
    /// Route labelled messages (CSV with `text,label`; `none` = must fall back) and report.
    Eval {
        file: PathBuf,
        #[arg(long, default_value = "intents")]
        intents: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Override the example-ranking confidence threshold.
        #[arg(long)]
        threshold: Option<f32>,
        /// Override the required margin over the runner-up intent.
        #[arg(long)]
        margin: Option<f32>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,actix_server=warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Intents(IntentsCommand::Check { dir }) => return check(&dir),
        Command::Intents(IntentsCommand::Eval { file, intents, json, threshold, margin }) => {
            eval(&file, &intents, json, threshold, margin)
        }
        Command::Chat { url, campaign } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(nudge::client::chat(&url, campaign))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let file = args.config.or_else(|| Some(PathBuf::from("nudge.toml")).filter(|p| p.exists()));
    let mut config = Config::from_file(file.as_deref())?;
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.data {
        config.data = v;
    }
    if let Some(v) = args.intents {
        config.intents = v;
    }
    if let Some(v) = args.public_url {
        config.public_url = Some(v);
    }
    if let Some(v) = args.allowed_origins {
        config.allowed_origins = v;
    }
    actix_web::rt::System::new().block_on(async move {
        let running = nudge::server::start(config)?;
        // Scripts and tests read this line to learn the bound port.
        println!("nudge listening on http://{}", running.addr);
        println!("try the demo page: {}/demo", running.public_url);
        let nudge::server::Running { server, app, watch, .. } = running;
        server.await?;
        drop(watch);
        app.store.flush()?;
        Ok(())
    })
}

fn eval(file: &Path, dir: &Path, json: bool, threshold: Option<f32>, margin: Option<f32>) -> anyhow::Result<()> {
    let mut set = IntentSet::load(dir).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("the intents have errors:\n{}", list.join("\n"))
    })?;
    set.threshold = threshold.unwrap_or(set.threshold);
    set.margin = margin.unwrap_or(set.margin);
    let rows = nudge::intents::eval::read_rows(file)?;
    let report = nudge::intents::eval::evaluate(&set, &rows);
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["accuracy"] = report.accuracy().into();
        value["labelled_accuracy"] = report.labelled_accuracy().into();
        value["false_match_rate"] = report.false_match_rate().into();
        print_out(&format!("{}\n", serde_json::to_string_pretty(&value)?))
    } else {
        print_out(&report.to_string())
    }
}

/// Prints to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn check(dir: &Path) -> ExitCode {
    let set = match IntentSet::load(dir) {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            eprintln!("{} error(s)", errors.len());
            return ExitCode::FAILURE;
        }
    };
    for warning in &set.warnings {
        println!("{warning}");
    }
    let failures = set.check_examples();
    for f in &failures {
        println!("{f}");
    }
    let examples: usize = set.intents.iter().map(|i| i.examples.len() + i.counter_examples.len()).sum();
    if failures.is_empty() {
        println!("{} intents, {examples} examples: all pass", set.intents.len());
        ExitCode::SUCCESS
    } else {
        eprintln!("{} of {examples} examples fail", failures.len());
        ExitCode::FAILURE
    }
}
