//! flotted: see `flotte::daemon`.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let matches = flotte::daemon::command().get_matches();
    flotte::daemon::logging::init(flotte::daemon::log_format(&matches));
    let config = match flotte::daemon::load_config(&matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flotted: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutting down");
            shutdown.cancel();
        }
    });
    match flotte::daemon::serve(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
