//! The `nudge` command line: parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nudge::config::Config;
use nudge::intents::IntentSet;

#[derive(Parser)]
#[command(
    name = "nudge",
    version,
    about = "Self-hosted conversational marketing server"
)]
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
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,actix_server=warn"),
    )
    .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Intents(IntentsCommand::Check { dir }) => return check(&dir),
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
    let file = args
        .config
        .or_else(|| Some(PathBuf::from("nudge.toml")).filter(|p| p.exists()));
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
        running.server.await?;
        running.app.store.flush()?;
        Ok(())
    })
}

fn check(dir: &std::path::Path) -> ExitCode {
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
    let failures = set.check_examples();
    for f in &failures {
        println!("{f}");
    }
    let examples: usize = set
        .intents
        .iter()
        .map(|i| i.examples.len() + i.counter_examples.len())
        .sum();
    if failures.is_empty() {
        println!(
            "{} intents, {examples} examples: all pass",
            set.intents.len()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("{} of {examples} examples fail", failures.len());
        ExitCode::FAILURE
    }
}
