//! `hoard serve`: the server, with its settings from defaults, file, env and flags.

use hoard::config::{Config, Overrides};

pub async fn run(o: Overrides) -> Result<(), String> {
    let cfg = Config::load(&o).map_err(|e| e.to_string())?;
    init_tracing(&cfg.log);
    let node = hoard::server::Node::open(cfg)
        .await
        .map_err(|e| e.to_string())?;
    hoard::server::serve(node, hoard::server::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
