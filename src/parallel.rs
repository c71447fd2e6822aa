//! Work spread over a few threads: the probes of the candidate disks, which on a machine with
//! many disks cost more one after the other (each waits for its device) than side by side.

use std::sync::atomic::{AtomicUsize, Ordering};

/// `f` of every item, on up to `threads` threads besides this one, which runs `beside` first and
/// then takes its share. Results come back in the items' order; `None` for an item whose thread
/// ended abnormally (a release build aborts on a panic instead). A thread that cannot be started
/// leaves its share to the others.
pub(crate) fn map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
    beside: impl FnOnce(),
) -> Vec<Option<R>> {
    let next = AtomicUsize::new(0);
    let next = &next;
    let f = &f;
    let work = move || {
        let mut done: Vec<(usize, R)> = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            done.push((i, f(item)));
        }
        done
    };
    let results: Vec<(usize, R)> = std::thread::scope(|s| {
        let spawned: Vec<_> = (0..threads.min(items.len()))
            .filter_map(|_| std::thread::Builder::new().name("probe".into()).spawn_scoped(s, work).ok())
            .collect();
        beside();
        let mut results = work();
        for t in spawned {
            results.extend(t.join().unwrap_or_default());
        }
        results
    });
    let mut out: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (i, r) in results {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_once_in_order_with_the_side_work_done() {
        let items: Vec<u32> = (0..100).collect();
        let calls = AtomicUsize::new(0);
        let mut side = false;
        let out = map(
            &items,
            4,
            |n| {
                calls.fetch_add(1, Ordering::Relaxed);
                n * 2
            },
            || side = true,
        );
        assert!(side);
        assert_eq!(calls.load(Ordering::Relaxed), 100, "each item once");
        assert_eq!(out, items.iter().map(|n| Some(n * 2)).collect::<Vec<_>>());
        assert!(map(&[] as &[u32], 8, |n| *n, || ()).is_empty());
        assert_eq!(map(&[7u32], 0, |n| *n, || ()), vec![Some(7)], "no threads: this one does it");
    }
}
