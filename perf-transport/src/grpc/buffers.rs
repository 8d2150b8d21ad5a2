//! Receive buffers a worker reuses across inline transfers, so a payload lands in memory that is
//! already paged in.
//!
//! A fresh buffer pays a page fault for every 4 KiB it touches, about as much as copying the
//! payload twice; keeping the buffers of finished transfers (up to a byte budget) removes that
//! cost from every transfer after the first of its size. Buffers come in power-of-two size
//! classes from [`MIN_POOLED`] up, so a buffer is only ever reused for a payload at least half
//! its size. Smaller payloads use plain allocations, which the allocator serves from memory it
//! already holds.

use std::sync::Mutex;

/// Smallest payload whose buffer is pooled: 64 KiB.
const MIN_POOLED: usize = 64 << 10;

/// Finished transfers' buffers, kept for reuse up to a byte budget.
#[derive(Debug)]
pub(crate) struct BufferPool {
    max_bytes: usize,
    free: Mutex<Retained>,
}

#[derive(Debug, Default)]
struct Retained {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl BufferPool {
    /// A pool that keeps at most `max_bytes` of buffers; 0 keeps none.
    pub(crate) fn new(max_bytes: usize) -> BufferPool {
        BufferPool {
            max_bytes,
            free: Mutex::new(Retained::default()),
        }
    }

    /// An empty buffer that holds at least `len` bytes without growing, reused when one of its
    /// size class is free; `None` if the memory cannot be had.
    pub(crate) fn take(&self, len: usize) -> Option<Vec<u8>> {
        let class = size_class(len);
        if len >= MIN_POOLED {
            let mut free = self.lock();
            if let Some(index) = free.buffers.iter().position(|it| it.capacity() == class) {
                let buffer = free.buffers.swap_remove(index);
                free.bytes -= buffer.capacity();
                return Some(buffer);
            }
        }
        let mut buffer = Vec::new();
        buffer.try_reserve_exact(class).ok()?;
        Some(buffer)
    }

    /// Keeps `buffer` for a later transfer if it is of a pooled size class and fits the budget.
    pub(crate) fn give_back(&self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity < MIN_POOLED || capacity != size_class(capacity) {
            return;
        }
        let mut free = self.lock();
        if free.bytes + capacity <= self.max_bytes {
            buffer.clear();
            free.bytes += capacity;
            free.buffers.push(buffer);
        }
    }

    /// Bytes of buffers kept for reuse.
    #[cfg(test)]
    pub(crate) fn retained_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Retained> {
        // The list stays consistent even if a holder panicked: every change is one push or
        // swap_remove with its byte count next to it.
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The capacity a buffer for `len` bytes gets: `len` itself below [`MIN_POOLED`], else the next
/// power of two.
fn size_class(len: usize) -> usize {
    if len < MIN_POOLED {
        len
    } else {
        len.checked_next_power_of_two().unwrap_or(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_for_a_payload_of_its_class() {
        let pool = BufferPool::new(8 << 20);
        let mut first = pool.take(3 << 20).unwrap();
        assert_eq!(first.capacity(), 4 << 20);
        first.extend_from_slice(&[1, 2, 3]);
        let address = first.as_ptr();
        pool.give_back(first);
        assert_eq!(pool.retained_bytes(), 4 << 20);

        let again = pool.take((2 << 20) + 1).unwrap();
        assert_eq!(again.as_ptr(), address, "same class, same buffer");
        assert!(again.is_empty());
        assert_eq!(pool.retained_bytes(), 0);
    }

    #[test]
    fn the_budget_and_the_smallest_class_bound_what_is_kept() {
        let pool = BufferPool::new(4 << 20);
        let (first, second) = (pool.take(4 << 20).unwrap(), pool.take(4 << 20).unwrap());
        pool.give_back(first);
        pool.give_back(second);
        assert_eq!(
            pool.retained_bytes(),
            4 << 20,
            "a second 4 MiB buffer is over budget"
        );

        let small = pool.take(1000).unwrap();
        assert_eq!(small.capacity(), 1000);
        pool.give_back(small);
        assert_eq!(pool.retained_bytes(), 4 << 20, "small buffers are not kept");

        let none = BufferPool::new(0);
        none.give_back(none.take(1 << 20).unwrap());
        assert_eq!(none.retained_bytes(), 0);
    }
}
