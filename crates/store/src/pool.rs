//! A small blocking connection pool: connections are created on demand up to a
//! limit and handed back on drop. Both drivers use it; rusqlite has no pool that
//! links with its current version, and this is all Steward needs.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::{StoreError, StoreResult};

pub(crate) struct Pool<C> {
    idle: Mutex<PoolState<C>>,
    freed: Condvar,
    max: usize,
    connect: Box<dyn Fn() -> StoreResult<C> + Send + Sync>,
}

struct PoolState<C> {
    idle: Vec<C>,
    open: usize,
}

/// A connection borrowed from the pool. A connection whose use failed in a way
/// that may leave it broken is dropped with [`Pooled::discard`].
pub(crate) struct Pooled<'a, C> {
    pool: &'a Pool<C>,
    conn: Option<C>,
}

impl<C> Pool<C> {
    pub(crate) fn new(
        max: usize,
        connect: impl Fn() -> StoreResult<C> + Send + Sync + 'static,
    ) -> Self {
        Pool {
            idle: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            max: max.max(1),
            connect: Box::new(connect),
        }
    }

    pub(crate) fn get(&self) -> StoreResult<Pooled<'_, C>> {
        let mut state = self
            .idle
            .lock()
            .map_err(|_| StoreError::Connect("pool lock poisoned".into()))?;
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match (self.connect)() {
                    Ok(conn) => Ok(Pooled {
                        pool: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        if let Ok(mut s) = self.idle.lock() {
                            s.open -= 1;
                        }
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (next, timeout) = self
                .freed
                .wait_timeout(state, Duration::from_secs(30))
                .map_err(|_| StoreError::Connect("pool lock poisoned".into()))?;
            if timeout.timed_out() && next.idle.is_empty() && next.open >= self.max {
                return Err(StoreError::Busy(
                    "no database connection became free within 30 s".into(),
                ));
            }
            state = next;
        }
    }
}

impl<C> Pooled<'_, C> {
    pub(crate) fn conn(&mut self) -> StoreResult<&mut C> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Connect("connection already discarded".into()))
    }

    /// Closes this connection instead of returning it to the pool.
    pub(crate) fn discard(mut self) {
        if self.conn.take().is_some()
            && let Ok(mut s) = self.pool.idle.lock()
        {
            s.open -= 1;
        }
        self.pool.freed.notify_one();
    }
}

impl<C> Drop for Pooled<'_, C> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && let Ok(mut s) = self.pool.idle.lock()
        {
            s.idle.push(conn);
        }
        self.pool.freed.notify_one();
    }
}
