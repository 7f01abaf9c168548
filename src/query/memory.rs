//! The memory a session's queries may take: one pool for DataFusion's operators and Persona's own
//! (per-user aggregate states), with a limit that `--memory-limit`, the library's
//! [`crate::query::SessionOptions::memory_limit`] and `SET datafusion.runtime.memory_limit = '2G'`
//! set (and `RESET datafusion.runtime.memory_limit` lifts). A query whose operators would go past
//! it spills where DataFusion can, and otherwise fails with a "resources exhausted" error that
//! says how to raise the limit; the session stays usable.
//!
//! The pool is Persona's rather than DataFusion's `GreedyMemoryPool` so that the limit can change
//! without replacing the runtime (which would leave the operators already holding the old pool
//! outside the new limit).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation, human_readable_size};

/// A pool with an adjustable limit (`usize::MAX`: none).
#[derive(Debug)]
pub struct QueryMemory {
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl QueryMemory {
    pub fn new(limit: Option<usize>) -> QueryMemory {
        QueryMemory { limit: AtomicUsize::new(limit.unwrap_or(usize::MAX)), used: AtomicUsize::new(0) }
    }

    /// Sets the limit (`None`: no limit). Reservations already made stay; the next growth is
    /// held to the new limit.
    pub fn set_limit(&self, limit: Option<usize>) {
        self.limit.store(limit.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    pub fn limit(&self) -> Option<usize> {
        Some(self.limit.load(Ordering::Relaxed)).filter(|l| *l != usize::MAX)
    }
}

impl fmt::Display for QueryMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let used = human_readable_size(self.used.load(Ordering::Relaxed));
        match self.limit() {
            Some(limit) => write!(f, "{used} of the session's limit of {}", human_readable_size(limit)),
            None => write!(f, "{used}, no limit"),
        }
    }
}

impl MemoryPool for QueryMemory {
    fn name(&self) -> &str {
        "persona"
    }

    fn grow(&self, _reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, _reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(additional).filter(|next| *next <= limit)
            })
            .map_err(|used| {
                DataFusionError::ResourcesExhausted(format!(
                    "{} needs {} more with {} in use by the session's queries, over its memory limit of {}; \
                     raise it with SET datafusion.runtime.memory_limit = '4G' (or --memory-limit)",
                    reservation.consumer().name(),
                    human_readable_size(additional),
                    human_readable_size(used),
                    human_readable_size(limit)
                ))
            })?;
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        match self.limit() {
            Some(limit) => MemoryLimit::Finite(limit),
            None => MemoryLimit::Infinite,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::execution::memory_pool::MemoryConsumer;

    use super::*;

    #[test]
    fn growth_past_the_limit_fails_with_how_to_raise_it_and_a_new_limit_applies_at_once() {
        let memory = Arc::new(QueryMemory::new(Some(1000)));
        let pool: Arc<dyn MemoryPool> = Arc::clone(&memory) as Arc<dyn MemoryPool>;
        let reservation = MemoryConsumer::new("per-user aggregate").register(&pool);
        reservation.try_grow(600).unwrap();
        let err = reservation.try_grow(600).unwrap_err().to_string();
        assert!(err.contains("per-user aggregate") && err.contains("memory_limit"), "{err}");
        assert_eq!(memory.reserved(), 600, "a refused growth takes nothing");
        memory.set_limit(Some(2000));
        reservation.try_grow(600).unwrap();
        memory.set_limit(None);
        reservation.try_grow(1 << 40).unwrap();
        assert!(matches!(memory.memory_limit(), MemoryLimit::Infinite));
        drop(reservation);
        assert_eq!(memory.reserved(), 0, "a dropped reservation gives everything back");
    }
}
