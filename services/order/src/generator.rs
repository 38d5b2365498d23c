//! The built-in order generator: a steady stream of plausible orders for demos, each the root of
//! its own trace, through the same validation and publishing path as the API.

use super::Orders;
use events::{Amount, LineItem, NewOrder};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The SKUs the generator orders from (and the inventory service stocks).
pub const CATALOG: [&str; 12] = [
    "SKU-KEYBOARD",
    "SKU-MOUSE",
    "SKU-MONITOR",
    "SKU-LAPTOP",
    "SKU-HEADSET",
    "SKU-WEBCAM",
    "SKU-DOCK",
    "SKU-CABLE",
    "SKU-CHAIR",
    "SKU-DESK",
    "SKU-LAMP",
    "SKU-SPEAKER",
];

/// A random valid order: 1 to 3 catalog items, 5.00 to 500.00.
pub fn random_order(rng: &mut fastrand::Rng) -> NewOrder {
    let lines = rng.usize(1..=3);
    let items = (0..lines)
        .map(|_| LineItem {
            sku: CATALOG[rng.usize(..CATALOG.len())].to_owned(),
            quantity: rng.u32(1..=3),
        })
        .collect();
    NewOrder {
        user_id: rng.u64(1..=1000),
        amount: Amount::from_cents(rng.i64(500..=50_000)),
        currency: "USD".to_owned(),
        items,
    }
}

pub(super) async fn run(orders: Orders, rate: f64, shutdown: CancellationToken) {
    let mut rng = fastrand::Rng::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(rate, "order generator started");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let span = tracing::info_span!(
            "generate_order",
            otel.name = "generate order",
            otel.kind = "internal"
        );
        // A failure is already logged by `place`; the generator just carries on.
        let _ = orders
            .place(random_order(&mut rng), "generator")
            .instrument(span)
            .await;
    }
    tracing::info!("order generator stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_orders_are_valid() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1_000 {
            let order = random_order(&mut rng);
            assert_eq!(order.validate(), Ok(()), "{order:?}");
        }
    }
}
