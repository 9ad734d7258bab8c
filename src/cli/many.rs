//! Requests about many units at once: a command line of a thousand units must not wait for a
//! thousand round trips one after the other.

use std::collections::HashMap;
use std::future::Future;

use futures_util::StreamExt;

use super::client::{Client, ClientError};
use super::view;
use crate::unit::UnitName;

/// Requests in flight at once: enough to hide the round trips, few enough to be a fair
/// client of one flotted.
pub(super) const IN_FLIGHT: usize = 32;

/// Above this many units, reading the whole list (a page per 100 units) costs fewer requests
/// than reading each unit.
pub(super) const READ_ALL_ABOVE: usize = 50;

/// The registry's units of these names, in their order (`None` for one it does not have):
/// each read on its own for a few, the whole list read once for many.
pub(super) async fn units_named<N: std::borrow::Borrow<UnitName>>(
    client: &Client,
    names: &[N],
) -> Result<Vec<Option<view::Unit>>, ClientError> {
    if names.len() <= READ_ALL_ABOVE {
        return in_order(names, |name| client.unit(name.borrow())).await;
    }
    let mut all: HashMap<UnitName, view::Unit> = client
        .units()
        .await?
        .into_iter()
        .map(|u| (u.name.clone(), u))
        .collect();
    Ok(names.iter().map(|n| all.remove(n.borrow())).collect())
}

/// Runs `f` on every item, up to `IN_FLIGHT` at a time, and gives the results in the items'
/// order. The first failure in that order ends it: requests not sent yet are not sent.
pub(super) async fn in_order<I, F, Fut, T, E>(items: I, f: F) -> Result<Vec<T>, E>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut results = futures_util::stream::iter(items).map(f).buffered(IN_FLIGHT);
    let mut out = Vec::new();
    while let Some(result) = results.next().await {
        out.push(result?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_keep_the_items_order_and_the_first_failure_wins() {
        // Later items finish first: the order is the items', not the finishing order.
        let delays = [30u64, 10, 20, 0];
        let got: Result<Vec<u64>, String> = in_order(delays, |d| async move {
            tokio::time::sleep(std::time::Duration::from_millis(d)).await;
            Ok(d)
        })
        .await;
        assert_eq!(got.unwrap(), vec![30, 10, 20, 0]);

        let got: Result<Vec<u64>, String> = in_order([1u64, 2, 3, 4], |i| async move {
            match i {
                2 | 4 => Err(format!("item {i} failed")),
                _ => Ok(i),
            }
        })
        .await;
        assert_eq!(got.unwrap_err(), "item 2 failed");
    }
}
