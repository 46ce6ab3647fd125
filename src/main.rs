//! The `nudge` command line: parses arguments and calls into the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nudge::config::{Args, Config};
use nudge::intents::IntentSet;

/// sled copies tree nodes on every write and a chat turn allocates many small strings; glibc's
/// allocator spent a third of the server's time on them (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: nudge::allocator::Mimalloc = nudge::allocator::Mimalloc;

#[derive(Parser)]
#[command(name = "nudge", version, about = "Self-hosted conversational marketing server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Args),
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
    /// Print a signed email chat link.
    Link {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        campaign: Option<String>,
        #[arg(long)]
        product: Option<String>,
        /// How long the link stays valid: 30d, 12h, 45m or 90s.
        #[arg(long, default_value = "30d", value_parser = parse_ttl)]
        ttl: u64,
        #[command(flatten)]
        config: Args,
    },
    /// Load generator: round trips per second and latency percentiles.
    Loadgen {
        #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
        url: String,
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Seconds measured (after ramp-up and warm-up).
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 3.0)]
        warmup: f64,
        /// Messages per second in total (open loop); without it, a closed loop.
        #[arg(long)]
        rate: Option<f64>,
        /// Only hold the connections open (to measure memory per connection).
        #[arg(long)]
        idle: bool,
        /// Client threads, each with its own single-threaded runtime.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long)]
        json: bool,
    },
    /// Export from the store (the server must be stopped: sled allows one process per store).
    #[command(subcommand)]
    Export(ExportCommand),
    /// Erase a visitor for good (a GDPR request): profile, conversations, email links and
    /// follow-ups. The server must be stopped; `/admin` does the same while it runs.
    Erase {
        #[arg(long, conflicts_with = "email", required_unless_present = "email")]
        visitor: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        config: Args,
    },
    /// Ad spend, for return on ad spend in the funnel.
    #[command(subcommand)]
    Spend(SpendCommand),
    /// Apply the PostgreSQL schema's migrations (`serve` applies them too, at start) and say
    /// which version the database is at.
    Migrate {
        #[command(flatten)]
        config: Args,
    },
    /// Set the `/admin` password: reads it from standard input (one line). Restart the server
    /// to use it; every admin session ends.
    AdminPassword {
        #[command(flatten)]
        config: Args,
    },
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
        /// Override the threshold for messages the scope gate is sure are about the shop.
        #[arg(long)]
        sure_threshold: Option<f32>,
        /// Override the required margin over the runner-up intent.
        #[arg(long)]
        margin: Option<f32>,
        /// Override the probability of being about the shop that a routed message needs.
        #[arg(long)]
        scope: Option<f32>,
        /// Print every row as CSV (text, label, got, how, confidence, source, lang) instead.
        #[arg(long)]
        rows: bool,
        /// K-fold cross-validation of the tuned thresholds: tune on K-1 folds of the file,
        /// measure on the one left out.
        #[arg(long)]
        folds: Option<usize>,
        /// With --folds: how many missed messages one false match is worth when tuning.
        #[arg(long, default_value_t = 1)]
        false_match_cost: u32,
    },
}

#[derive(Subcommand)]
enum SpendCommand {
    /// Import a CSV with the columns `date,campaign,platform,amount,currency` (all rows or
    /// none; a row already imported for the same date, campaign and platform is replaced).
    /// The server must be stopped; while it runs, `POST /api/spend` does the same.
    Import {
        file: PathBuf,
        #[command(flatten)]
        config: Args,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Every lead with its captured preferences, status, source and orders.
    Leads {
        #[arg(long, value_enum, default_value = "csv")]
        format: nudge::export::Format,
        #[command(flatten)]
        filter: FilterArgs,
        /// Include every message and reply (jsonl only).
        #[arg(long)]
        transcripts: bool,
        #[command(flatten)]
        config: Args,
    },
    /// A hashed audience list (SHA-256 of normalized emails, ads consent only) for an ad platform.
    Audience {
        #[arg(long, value_enum)]
        platform: nudge::export::Platform,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        config: Args,
    },
}

/// Which leads an export takes.
#[derive(clap::Args)]
struct FilterArgs {
    /// Only leads with this status (chatting, qualified, checkout_clicked, converted).
    #[arg(long, value_parser = parse_status)]
    status: Option<nudge::domain::Status>,
    #[arg(long)]
    campaign: Option<String>,
    /// Only leads with this retargeting tag, e.g. `cart_abandoner`.
    #[arg(long)]
    tag: Option<String>,
    /// Only leads whose last visit with UTM parameters had this `utm_source`.
    #[arg(long)]
    source: Option<String>,
    /// ... and this `utm_medium`.
    #[arg(long)]
    medium: Option<String>,
}

impl From<FilterArgs> for nudge::export::LeadFilter {
    fn from(args: FilterArgs) -> Self {
        nudge::export::LeadFilter {
            status: args.status,
            campaign: args.campaign,
            tag: args.tag,
            source: args.source,
            medium: args.medium,
            segment: None,
            model: None,
            now: nudge::now_ms(),
        }
    }
}

/// A log line written by a chat's task ends with its visitor and conversation
/// (`nudge::chat::about`), whatever wrote it: the session, the store, a dependency's `log`.
/// (Span fields are formatted here too; chat tasks open no spans.)
struct ChatFields(tracing_subscriber::fmt::format::DefaultFields);

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for ChatFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        self.0.format_fields(writer.by_ref(), fields)?;
        match nudge::chat::about() {
            Some((visitor, conversation)) => write!(writer, " visitor={visitor} conversation={conversation}"),
            None => Ok(()),
        }
    }
}

fn main() -> ExitCode {
    // Everything Nudge writes (the store, mail files, exports into the data directory) holds
    // personal data: readable by this user only.
    // SAFETY: umask only sets the process's file creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    // mimalloc asks for transparent huge pages on its arenas, and a 2 MiB page is resident once
    // any byte of it is touched: an idle connection's buffers are mostly untouched, so with huge
    // pages it cost 23–27 KiB resident instead of 16 (BENCHMARKS.md). They save some CPU under
    // heavy traffic (about 5 % per message at 1,000 busy connections, measured), so mimalloc's own
    // `MIMALLOC_ALLOW_THP=1` keeps them. The process-wide switch also covers kernels whose THP
    // setting is `always`.
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none_or(|v| v != "1") {
        // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process's memory map.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_server=warn"));
    // Also takes the `log` records of the crate and its dependencies, inside the current span.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(ChatFields(tracing_subscriber::fmt::format::DefaultFields::new()))
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.load().and_then(serve),
        Command::Intents(IntentsCommand::Check { dir }) => return check(&dir),
        Command::Intents(IntentsCommand::Eval {
            file,
            intents,
            json,
            threshold,
            sure_threshold,
            margin,
            scope,
            rows,
            folds,
            false_match_cost,
        }) => eval(
            &file,
            &intents,
            EvalOptions { json, threshold, sure_threshold, margin, scope, rows, folds, false_match_cost },
        ),
        Command::Chat { url, campaign } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(nudge::client::chat(&url, campaign))),
        Command::Link { email, name, campaign, product, ttl, config } => {
            config.load().and_then(|config| link(&config, email, name, campaign, product, ttl))
        }
        Command::Loadgen { url, connections, duration, warmup, rate, idle, threads, json } => {
            let options = nudge::loadgen::Options {
                url,
                connections,
                duration: std::time::Duration::from_secs_f64(duration),
                warmup: std::time::Duration::from_secs_f64(warmup),
                rate,
                idle,
                threads,
            };
            let report = nudge::loadgen::run(&options);
            match json {
                true => serde_json::to_string(&report)
                    .map_err(anyhow::Error::from)
                    .and_then(|j| print_out(&format!("{j}\n"))),
                false => print_out(&report.to_string()),
            }
        }
        Command::Export(ExportCommand::Leads { format, filter, transcripts, config }) => {
            let filter = filter.into();
            config.load().and_then(|config| export_leads(&config, &filter, format, transcripts))
        }
        Command::Export(ExportCommand::Audience { platform, filter, config }) => {
            let filter = filter.into();
            config.load().and_then(|config| {
                let store = config.open_store()?;
                let out = std::io::BufWriter::new(std::io::stdout().lock());
                let written = nudge::export::audience(&store, &filter, platform, out)?;
                eprintln!("{written} hashed emails exported (visitors with ads consent and an address)");
                Ok(())
            })
        }
        Command::Erase { visitor, email, config } => config.load().and_then(|config| erase(&config, visitor, email)),
        Command::Migrate { config } => config.load().and_then(|config| migrate(&config)),
        Command::AdminPassword { config } => config.load().and_then(|config| admin_password(&config)),
        Command::Spend(SpendCommand::Import { file, config }) => {
            config.load().and_then(|config| import_spend(&config, &file))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let data = config.data.clone();
        let running = nudge::server::start(config)?;
        // Scripts and tests read this line to learn the bound port.
        println!("nudge listening on http://{}", running.addr);
        println!("try the demo page: {}/demo", running.public_url);
        if running.generated.created {
            let place = match running.app.store.is_shared() {
                true => "in the database (every node uses them)".to_string(),
                false => nudge::secrets::Secrets::path(&data).display().to_string(),
            };
            println!(
                "generated {place}: the link signing keys, the API key for POST /api/conversions \
                 (send it as `Authorization: Bearer <conversions_api_key>`) and the webhook signing \
                 secret; keep them private"
            );
        }
        if let Some(file) = &running.generated.admin_password {
            println!(
                "log in to {}/admin with the password in {} (readable by this user only; only its hash \
                 is kept; change it with `nudge admin-password`, which removes the file)",
                running.public_url,
                file.display()
            );
        }
        running.run_until(terminated()).await?;
        Ok(())
    })
}

/// SIGTERM (from a service manager) or SIGINT (Ctrl-C).
async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            log::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn erase(config: &Config, visitor: Option<String>, email: Option<String>) -> anyhow::Result<()> {
    let store = config.open_store()?;
    let profile = match (visitor, email) {
        (Some(id), _) => store.visitor(&nudge::ids::VisitorId::parse(&id)?)?,
        (None, Some(email)) => store.visitor_by_email(nudge::ids::Email::parse(&email)?.as_str())?,
        (None, None) => None,
    };
    let location = config.store_location()?;
    let profile = profile.ok_or_else(|| anyhow::anyhow!("no such visitor in {location}"))?;
    store.commit_blocking(vec![nudge::store::Command::Erase { visitor: profile.id, at: nudge::now_ms() }])?;
    let mails = nudge::outbox::erase_mail(config, &profile.id)?;
    println!("erased visitor {}", profile.id);
    if mails > 0 {
        eprintln!("removed {mails} mail files written to them");
    }
    Ok(())
}

fn import_spend(config: &Config, file: &Path) -> anyhow::Result<()> {
    let name = file.display();
    let mut reader = csv::Reader::from_path(file).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let mut commands = Vec::new();
    for (i, row) in reader.deserialize::<nudge::domain::Spend>().enumerate() {
        // Line 1 is the header.
        let line = i + 2;
        let row = row.map_err(|e| e.to_string()).and_then(nudge::domain::Spend::checked);
        commands.push(nudge::store::Command::RecordSpend(row.map_err(|e| anyhow::anyhow!("{name}:{line}: {e}"))?));
    }
    let store = config.open_store()?;
    let count = commands.len();
    store.commit_blocking(commands)?;
    println!("imported {count} spend rows");
    Ok(())
}

fn migrate(config: &Config) -> anyhow::Result<()> {
    match config.shared_store()? {
        Some(_) => println!("the database's schema is at version {}", nudge::store::SCHEMA_VERSION),
        None => println!("the embedded store needs no migrations (give --store postgres://… for a database)"),
    }
    Ok(())
}

fn admin_password(config: &Config) -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    let shared = config.shared_store()?;
    nudge::secrets::Secrets::set_admin_password(shared.as_ref(), &config.data, password)?;
    match shared {
        Some(_) => println!("admin password set in the database, for every node"),
        None => println!("admin password set in {}", nudge::secrets::Secrets::path(&config.data).display()),
    }
    Ok(())
}

fn link(
    config: &Config,
    email: String,
    name: Option<String>,
    campaign: Option<String>,
    product: Option<String>,
    ttl: u64,
) -> anyhow::Result<()> {
    let email = nudge::ids::Email::parse(&email)?;
    let (secrets, _) = nudge::secrets::Secrets::load(config.shared_store()?.as_ref(), &config.data)?;
    let claims = nudge::signing::Claims::Chat {
        email: email.to_string(),
        name,
        campaign,
        product,
        visitor: None,
        conversation: None,
        answer: None,
    };
    let token = secrets.signer()?.sign(&claims, nudge::now_ms() / 1000 + ttl);
    let public_url = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{}", config.listen),
    };
    println!("{public_url}/c/{token}");
    Ok(())
}

fn export_leads(
    config: &Config,
    filter: &nudge::export::LeadFilter,
    format: nudge::export::Format,
    transcripts: bool,
) -> anyhow::Result<()> {
    let store = config.open_store()?;
    let bar = indicatif::ProgressBar::new(store.visitor_count() as u64)
        .with_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} visitors {eta}")?);
    let stdout = std::io::stdout().lock();
    let written =
        nudge::export::leads(&store, filter, format, transcripts, std::io::BufWriter::new(stdout), |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })?;
    bar.finish_and_clear();
    eprintln!("{written} leads exported");
    Ok(())
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("{s:?}: expected a number and a unit, like 30d"))?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        other => return Err(format!("unknown unit {other:?} (use d, h, m or s)")),
    };
    n.checked_mul(seconds).filter(|t| *t > 0).ok_or_else(|| format!("{s:?} is not a usable duration"))
}

fn parse_status(s: &str) -> Result<nudge::domain::Status, String> {
    nudge::domain::Status::parse(s)
        .ok_or_else(|| format!("unknown status {s:?} (chatting, qualified, checkout_clicked or converted)"))
}

struct EvalOptions {
    json: bool,
    threshold: Option<f32>,
    sure_threshold: Option<f32>,
    margin: Option<f32>,
    scope: Option<f32>,
    rows: bool,
    folds: Option<usize>,
    false_match_cost: u32,
}

fn eval(file: &Path, dir: &Path, options: EvalOptions) -> anyhow::Result<()> {
    use nudge::intents::eval;
    let mut set = IntentSet::load(dir).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("the intents have errors:\n{}", list.join("\n"))
    })?;
    set.threshold = options.threshold.unwrap_or(set.threshold);
    set.sure_threshold = options.sure_threshold.unwrap_or(set.sure_threshold);
    set.margin = options.margin.unwrap_or(set.margin);
    set.scope = options.scope.unwrap_or(set.scope);
    let rows = eval::read_rows(file)?;
    if let Some(k) = options.folds {
        let report = eval::cross_validate(&mut set, &rows, k, options.false_match_cost)?;
        return match options.json {
            true => print_out(&format!("{}\n", serde_json::to_string_pretty(&report)?)),
            false => print_out(&report.to_string()),
        };
    }
    if options.rows {
        let mut out = csv::Writer::from_writer(Vec::new());
        for row in &rows {
            out.serialize(eval::route(&set, row))?;
        }
        return print_out(&String::from_utf8(out.into_inner()?)?);
    }
    let report = eval::evaluate(&set, &rows);
    if options.json {
        print_out(&format!("{}\n", serde_json::to_string_pretty(&report)?))
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
        println!(
            "{} intents, {} emails, {} segments, {} journeys, {} triggers, {examples} examples: all pass",
            set.intents.len(),
            set.emails.len(),
            set.journeys.segments.len(),
            set.journeys.journeys.len(),
            set.triggers.len()
        );
        println!("{}", set.gate());
        ExitCode::SUCCESS
    } else {
        eprintln!("{} of {examples} examples fail", failures.len());
        ExitCode::FAILURE
    }
}
