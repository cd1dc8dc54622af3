//! `touchpoint keys new`: a fresh API key, printed once, and the config entry with its hash;
//! and the connection options every client command shares (address, key, TLS).
use anyhow::{Context, bail};
use touchpoint::config::{Role, key_hash};
use touchpoint::grpc::auth::{ApiKey, KeyedChannel, keyed, new_key};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Print a new random key (shown once: store it in your secret manager) and the
    /// `[[auth.keys]]` entry with its SHA-256 for the config or keys file.
    New {
        /// Who will hold the key (logged with each call; letters, digits, `_ - .`).
        #[arg(long)]
        id: String,
        /// A role to grant (repeatable): decide, ingest, profiles, analyst, admin.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Cmd::New { id, roles } => {
            let (key, entry) = mint(&id, &roles)?;
            println!("API key for {id} (shown once; the server stores only its hash):\n\n  {key}\n");
            println!(
                "Add to the config file ([[auth.keys]]) or to the keys file named by auth.keys_file ([[keys]]):\n"
            );
            println!("{entry}");
            Ok(())
        }
    }
}

/// A new key and its TOML entry (`[[auth.keys]]`).
pub fn mint(id: &str, roles: &[String]) -> anyhow::Result<(String, String)> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        bail!("--id must be letters, digits, `_`, `-` or `.`");
    }
    for r in roles {
        if Role::parse(r).is_none() {
            let all: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
            bail!("unknown role {r:?}; roles are {}", all.join(", "));
        }
    }
    let key = new_key();
    let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
    let entry = format!(
        "[[auth.keys]]\nid = {id:?}\nsha256 = \"{}\"\nroles = [{}]\n",
        hex::encode(key_hash(&key)),
        roles.join(", ")
    );
    Ok((key, entry))
}

/// A key with every role, for a server this process runs itself (demo, bench).
pub fn mint_all() -> (String, String) {
    let roles: Vec<String> = Role::ALL.iter().map(|r| r.name().to_string()).collect();
    mint("local", &roles).expect("valid id and roles")
}

/// How a client command reaches the server.
#[derive(clap::Args, Clone)]
pub struct Conn {
    /// Server address (`https://` for a server with `[server.tls]`).
    #[arg(long, default_value = "http://127.0.0.1:50051", env = "TOUCHPOINT_ADDR")]
    pub addr: String,
    /// API key, sent as `authorization: Bearer <key>`.
    #[arg(long, env = "TOUCHPOINT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM CA certificate that signed the server's certificate (for an `https://` address).
    #[arg(long)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate, for a server that requires one (with --tls-key-file).
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<std::path::PathBuf>,
}

impl Conn {
    /// A connected channel that sends the key with every call.
    pub async fn connect(&self) -> anyhow::Result<KeyedChannel> {
        let mut endpoint = tonic::transport::Endpoint::from_shared(self.addr.clone())?.tcp_nodelay(true);
        if self.addr.starts_with("https://") {
            let mut tls = tonic::transport::ClientTlsConfig::new();
            if let Some(ca) = &self.tls_ca_file {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
                let cert = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
                let key = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = endpoint.connect().await.with_context(|| format!("connecting to {}", self.addr))?;
        Ok(keyed(channel, ApiKey::new(self.api_key.as_deref()).map_err(anyhow::Error::msg)?))
    }
}
