use clap::Parser;
use platform::config::Env;
use platform::telemetry;

#[tokio::main]
async fn main() {
    let cli = console::Cli::parse();
    let telemetry = match telemetry::init_tool(&Env::from_process(), "kafka-console") {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(2);
        }
    };
    let code = match console::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            2
        }
    };
    // Flushes the spans of produced records before the process exits.
    drop(telemetry);
    std::process::exit(code);
}
