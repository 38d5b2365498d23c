use platform::config::{self, Env};
use platform::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let config = config::or_exit(sensor::Config::from_env(&env));
    let _telemetry = telemetry::init(&env, sensor::SERVICE)?;
    let stop = shutdown::on_signal(config.service.shutdown_timeout);
    sensor::Application::build(config, &stop)
        .await?
        .run_until_stopped(stop)
        .await;
    Ok(())
}
