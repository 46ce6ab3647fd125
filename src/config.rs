//! Configuration: defaults, then an optional `nudge.toml`, then `NUDGE_*` environment variables
//! and flags (clap reads those two; a flag wins over its variable).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where configuration comes from: `--config` (or `./nudge.toml`), then `NUDGE_*`, then flags.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (TOML); `./nudge.toml` is read when it exists.
    #[arg(long, env = "NUDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "NUDGE_LISTEN")]
    pub listen: Option<String>,
    /// Data directory (the embedded store and generated secrets).
    #[arg(long, env = "NUDGE_DATA")]
    pub data: Option<PathBuf>,
    /// A PostgreSQL database to keep everything in instead (postgres://USER@HOST:PORT/DB),
    /// shared by every node given the same URL.
    #[arg(long, env = "NUDGE_STORE")]
    pub store: Option<String>,
    /// Intents directory.
    #[arg(long, env = "NUDGE_INTENTS")]
    pub intents: Option<PathBuf>,
    /// Public URL of this server, for links.
    #[arg(long, env = "NUDGE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Extra origins allowed to open the chat socket (comma separated).
    #[arg(long, env = "NUDGE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
}

impl Args {
    pub fn load(self) -> anyhow::Result<Config> {
        let file = self.config.or_else(|| Some(PathBuf::from("nudge.toml")).filter(|p| p.exists()));
        let mut config = Config::from_file(file.as_deref())?;
        config.listen = self.listen.unwrap_or(config.listen);
        config.data = self.data.unwrap_or(config.data);
        config.store = self.store.or(config.store);
        config.intents = self.intents.unwrap_or(config.intents);
        config.public_url = self.public_url.or(config.public_url);
        config.allowed_origins = self.allowed_origins.unwrap_or(config.allowed_origins);
        Ok(config)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    pub listen: String,
    /// The data directory: the embedded store lives in `<data>/store` (unless `store` names a
    /// database), beside the generated secrets and mail files.
    pub data: PathBuf,
    /// A PostgreSQL database (`postgres://USER[:PASSWORD]@HOST:PORT/DB`) to keep everything in
    /// instead of the embedded store: several nodes given the same one share it.
    pub store: Option<String>,
    /// The intent files.
    pub intents: PathBuf,
    /// The URL shoppers reach this server at, for links; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Origins (scheme://host[:port]) whose pages may open the chat socket, besides the server's
    /// own pages. `*` allows any origin.
    pub allowed_origins: Vec<String>,
    /// Longest shopper message, in characters.
    pub max_message_chars: usize,
    /// Largest WebSocket frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// A connection with no chat frame for this long is closed (the widget reconnects on demand).
    pub idle_timeout_secs: u64,
    /// Ping interval; a connection silent for three intervals is considered dead.
    pub heartbeat_secs: u64,
    /// A returning visitor resumes their last conversation when it was active this recently.
    pub resume_window_secs: u64,
    /// A lead qualifies for a checkout link at this score ...
    pub qualify_score: i64,
    /// ... once these preferences are known.
    pub qualify_requires: Vec<String>,
    /// Where checkout links lead; `{{ name }}` is any preference, `sku` (the `sku` preference,
    /// else `product`), `campaign` or `visitor`. Values are URL-encoded.
    pub checkout_url: String,
    /// Hosts a checkout link may redirect to (no open redirect).
    pub shop_hosts: Vec<String>,
    /// How long checkout links stay valid.
    pub checkout_ttl_days: u64,
    /// Messages a connection may send per second (sustained) ...
    pub messages_per_second: f64,
    /// ... and in a burst.
    pub message_burst: f64,
    /// Messages all connections of one IP address may send per second (and twice that in a burst).
    pub messages_per_second_per_ip: f64,
    /// Rate-limited messages in a row before the connection is closed.
    pub rate_limit_strikes: u32,
    /// Open chat connections per IP address.
    pub max_connections_per_ip: usize,
    /// New chat connections one IP address may open per minute (and as many in a burst).
    pub connections_per_minute_per_ip: f64,
    /// Double opt-in: an address typed in the chat gets a confirmation email first, and no
    /// marketing email until its owner follows the link (addresses from signed email links
    /// count as confirmed). German marketing law expects it; turn it off only where it does not.
    pub double_opt_in: bool,
    /// What one `hello` may ask to keep about where the visitor came from (page, referrer,
    /// campaign, UTM parameters and click ids together), in bytes.
    pub max_hello_bytes: usize,
    /// A client that does not read its replies for this long is disconnected.
    pub send_timeout_secs: u64,
    /// Reverse proxies (addresses or networks such as `10.0.0.0/8`) whose `X-Forwarded-For`
    /// names the shopper's address for the per-address limits. Nobody else's header is believed.
    pub trusted_proxies: Vec<Network>,
    /// Where follow-up emails go: `smtp://[user:password@]host[:port]` (add `?tls=required`
    /// for STARTTLS) or `smtps://...`. Unset: written to `<data>/mail` as `.eml` files.
    pub smtp_url: Option<String>,
    /// The sender of follow-up emails.
    pub mail_from: String,
    /// The first retry after a temporary SMTP failure, in seconds; each next one waits twice
    /// as long (at most six hours).
    pub mail_retry_secs: u64,
    /// Attempts before a follow-up is dead-lettered.
    pub mail_max_attempts: u32,
    /// How long a node holds a follow-up it is running (several nodes on one PostgreSQL store):
    /// another node runs it only after this, when the first has died. Longer than a delivery.
    pub outbox_lease_secs: u64,
    /// Where tag events go (a JSON POST signed with `webhook_secret` from `secrets.toml`), for
    /// visitors with ads consent. Unset: no events.
    pub tag_webhook_url: Option<String>,
    /// A shopper offered a checkout link who has not bought this long after is tagged
    /// `cart_abandoner`; 0 turns the check off.
    pub abandoned_after_secs: u64,
    /// A person who took a chat in the admin and has not answered for this long no longer holds
    /// it: the bot answers again, and the chat waits in the inbox for someone else.
    pub handoff_idle_secs: u64,
    /// How often visitors are checked for journeys to enter (`intents/journeys/`).
    pub journey_sweep_secs: u64,
    /// A shopper with an address and marketing consent who leaves a question open this long
    /// gets the `unfinished_chat` email (when the pack has it), with its answers as buttons;
    /// 0 turns it off.
    pub unfinished_after_secs: u64,
    /// Conversations inactive this long are removed, visitors not seen this long are erased
    /// (checked hourly); 0 keeps everything.
    pub retention_days: u64,
    /// Marketing emails (follow-ups) one shopper gets in any 24 hours; more wait. 0: no cap.
    pub max_marketing_emails_per_day: u32,
    /// No marketing email in this window of the shopper's day ("21:00-08:00"; "" for none): one
    /// that falls due waits until it ends.
    pub quiet_hours: crate::outbox::limits::QuietHours,
    /// The shop's time zone, for shoppers whose widget did not say theirs.
    pub timezone: crate::outbox::limits::Zone,
}

/// An IP network; a bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Network(pub ipnet::IpNet);

impl TryFrom<String> for Network {
    type Error = String;

    fn try_from(text: String) -> Result<Network, String> {
        let text = text.trim();
        text.parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(Network)
            .map_err(|_| format!("{text:?} is neither an IP address nor a network like 10.0.0.0/8"))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data: PathBuf::from("data"),
            store: None,
            intents: PathBuf::from("intents"),
            public_url: None,
            allowed_origins: Vec::new(),
            max_message_chars: 1000,
            max_frame_bytes: 16 * 1024,
            idle_timeout_secs: 30 * 60,
            heartbeat_secs: 20,
            resume_window_secs: 24 * 60 * 60,
            qualify_score: 30,
            qualify_requires: vec!["product".into(), "size".into()],
            checkout_url: "https://shop.example/cart?sku={{ sku }}&size={{ size }}&utm_campaign={{ campaign }}".into(),
            shop_hosts: vec!["shop.example".into()],
            checkout_ttl_days: 7,
            messages_per_second: 2.0,
            message_burst: 20.0,
            messages_per_second_per_ip: 20.0,
            rate_limit_strikes: 10,
            max_connections_per_ip: 50,
            connections_per_minute_per_ip: 60.0,
            max_hello_bytes: 4096,
            double_opt_in: true,
            send_timeout_secs: 10,
            trusted_proxies: Vec::new(),
            smtp_url: None,
            mail_from: "Nudge Shoes <shop@localhost>".into(),
            mail_retry_secs: 60,
            mail_max_attempts: 10,
            outbox_lease_secs: 60,
            tag_webhook_url: None,
            abandoned_after_secs: 60 * 60,
            handoff_idle_secs: 15 * 60,
            journey_sweep_secs: 60,
            unfinished_after_secs: 60 * 60,
            retention_days: 365,
            max_marketing_emails_per_day: 1,
            quiet_hours: crate::outbox::limits::QuietHours::try_from("21:00-08:00".to_string())
                .expect("the default quiet hours are valid"),
            timezone: crate::outbox::limits::Zone::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Parse(PathBuf, String),
}

impl Config {
    /// Defaults, overlaid with `file` when given.
    pub fn from_file(file: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = file else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e.to_string()))
    }

    /// Where the store is: the database `store` names, else the data directory.
    pub fn store_location(&self) -> Result<crate::store::Location, crate::store::StoreError> {
        crate::store::Location::new(self.store.as_deref(), &self.data).map_err(crate::store::StoreError::Invalid)
    }

    /// The store, when it is shared (PostgreSQL): commands that only need the secrets open
    /// nothing on the embedded store, which a running server holds.
    pub fn shared_store(&self) -> Result<Option<crate::store::Store>, crate::store::StoreError> {
        match self.store_location()? {
            crate::store::Location::Dir(_) => Ok(None),
            location => crate::store::Store::open_at(&location).map(Some),
        }
    }

    /// Opens (or connects to) the store this configuration names.
    pub fn open_store(&self) -> Result<crate::store::Store, crate::store::StoreError> {
        crate::store::Store::open_at(&self.store_location()?)
    }

    pub fn public_url(&self, bound: std::net::SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }
}
