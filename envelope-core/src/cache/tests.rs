//! The cache's limits, coalescing and eviction.

use std::sync::atomic::{AtomicU64, Ordering};

use std::task::{Context, Poll, Waker};

use super::*;

fn materials() -> Materials {
    let edk = EncryptedDataKey::new("test", "k", vec![1, 2, 3]).expect("edk");
    Materials { data_key: DataKey::from_bytes([9; 32]), encrypted_data_keys: vec![edk] }
}

/// A clock the test moves by hand.
fn fake_clock() -> (Arc<AtomicU64>, Clock) {
    let offset = Arc::new(AtomicU64::new(0));
    let handle = Arc::clone(&offset);
    (offset, Box::new(move || Duration::from_millis(1_000_000 + handle.load(Ordering::SeqCst))))
}

fn get(cache: &Cache, context: &EncryptionContext, len: u64, calls: &AtomicU64) -> Arc<Materials> {
    let future = cache.materials(context, Some(len), || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(materials()))
    });
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result.expect("materials"),
        Poll::Pending => panic!("no flight is pending in these tests"),
    }
}

#[test]
fn entries_expire_with_the_clock() {
    let (offset, clock) = fake_clock();
    let cache = Cache::with_clock(CachePolicy::new(Duration::from_secs(60)), clock);
    let context = EncryptionContext::new();
    let calls = AtomicU64::new(0);
    get(&cache, &context, 10, &calls);
    offset.store(59_999, Ordering::SeqCst);
    get(&cache, &context, 10, &calls);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "still within max age");
    offset.store(60_000, Ordering::SeqCst);
    get(&cache, &context, 10, &calls);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "at max age the key is replaced");

    let edk = EncryptedDataKey::new("test", "k", vec![1]).expect("edk");
    cache.remember(std::slice::from_ref(&edk), &context, &DataKey::from_bytes([1; 32]));
    offset.store(119_999, Ordering::SeqCst);
    assert!(cache.unwrapped(std::slice::from_ref(&edk), &context).is_some());
    offset.store(120_000, Ordering::SeqCst);
    assert!(cache.unwrapped(std::slice::from_ref(&edk), &context).is_none());
    assert_eq!(cache.len().1, 0, "the expired key is gone");
}

#[test]
fn capacity_evicts_the_least_recently_used() {
    let (_, clock) = fake_clock();
    let cache = Cache::with_clock(CachePolicy::new(Duration::from_secs(60)).capacity(2), clock);
    let contexts: Vec<_> =
        (0..3).map(|i| EncryptionContext::from_pairs([("n", i.to_string())]).expect("context")).collect();
    let calls = AtomicU64::new(0);
    get(&cache, &contexts[0], 1, &calls);
    get(&cache, &contexts[1], 1, &calls);
    get(&cache, &contexts[0], 1, &calls);
    get(&cache, &contexts[2], 1, &calls); // evicts 1, the least recently used
    assert_eq!(cache.len().0, 2);
    get(&cache, &contexts[0], 1, &calls);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    get(&cache, &contexts[1], 1, &calls);
    assert_eq!(calls.load(Ordering::SeqCst), 4, "context 1 was evicted");

    let edks: Vec<_> = (0..3u8).map(|i| EncryptedDataKey::new("t", "k", vec![i]).expect("edk")).collect();
    let context = EncryptionContext::new();
    for edk in &edks {
        cache.remember(std::slice::from_ref(edk), &context, &DataKey::from_bytes([2; 32]));
    }
    assert_eq!(cache.len().1, 2);
    assert!(cache.unwrapped(std::slice::from_ref(&edks[0]), &context).is_none());
    assert!(cache.unwrapped(std::slice::from_ref(&edks[2]), &context).is_some());
}
