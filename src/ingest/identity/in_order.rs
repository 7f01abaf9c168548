//! Sources read on several threads and consumed in their order: thread `t` of `n` reads
//! sources `t`, `t + n`, … and sends what it makes on a bounded channel of its own, each source
//! closed by an end mark; the caller's thread takes the sources' items in source order. The
//! resolution's two passes over the identity sources spend most of their time decoding
//! Parquet and building records, and a links file must keep the order read; this uses both
//! cores for it and keeps that order.
//!
//! ```text
//! source 0, 2, 4 … ─ thread 0 ─ items, end ─┐
//!                                            ├─ caller: source 0's items, 1's, 2's … in order
//! source 1, 3, 5 … ─ thread 1 ─ items, end ─┘
//! ```

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::error::{Error, Result};

/// Items in flight per thread (each channel's bound).
const IN_FLIGHT: usize = 4;

enum Message<T> {
    Item(T),
    /// The source is read to its end.
    End,
}

/// What a reading thread is given to send items with; `send` fails when the caller has stopped
/// taking them (it has an error of its own to report).
pub(super) struct Sender<T> {
    tx: SyncSender<Message<T>>,
}

impl<T> Sender<T> {
    pub(super) fn send(&self, item: T) -> Result<()> {
        self.tx.send(Message::Item(item)).map_err(|_| stopped())
    }
}

fn stopped() -> Error {
    Error::Internal("the identity sources stopped being read".into())
}

/// Reads `sources` on `threads` threads, each with a state made by `state`: `read(state, i,
/// source, sender)` reads source `i` and sends its items; `take(i, item)` is called on this
/// thread with every item of source 0, then of source 1, and so on. Returns the threads'
/// states, or an error: a reading thread's (the first thread's of those that failed), else
/// `take`'s.
pub(super) fn read_in_order<S, W, T>(
    sources: &[S],
    threads: usize,
    state: impl Fn() -> W + Sync,
    read: impl Fn(&mut W, usize, &S, &Sender<T>) -> Result<()> + Sync,
    mut take: impl FnMut(usize, T) -> Result<()>,
) -> Result<Vec<W>>
where
    S: Sync,
    W: Send,
    T: Send,
{
    let threads = threads.clamp(1, sources.len().max(1));
    std::thread::scope(|scope| {
        let mut receivers: Vec<Receiver<Message<T>>> = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let (tx, rx) = sync_channel::<Message<T>>(IN_FLIGHT);
            receivers.push(rx);
            let (state, read) = (&state, &read);
            handles.push(scope.spawn(move || -> Result<W> {
                let mut w = state();
                let sender = Sender { tx };
                for (i, source) in sources.iter().enumerate().skip(t).step_by(threads) {
                    read(&mut w, i, source, &sender)?;
                    sender.tx.send(Message::End).map_err(|_| stopped())?;
                }
                Ok(w)
            }));
        }
        let mut failed: Option<Error> = None;
        'sources: for i in 0..sources.len() {
            loop {
                match receivers[i % threads].recv() {
                    Ok(Message::Item(item)) => {
                        if let Err(e) = take(i, item) {
                            failed = Some(e);
                            break 'sources;
                        }
                    }
                    Ok(Message::End) => break,
                    // The thread stopped before the end of the source: its error says why.
                    Err(_) => break 'sources,
                }
            }
        }
        // Threads still sending find no one listening and stop.
        drop(receivers);
        let mut states = Vec::with_capacity(threads);
        let mut read_error: Option<Error> = None;
        for h in handles {
            match h.join() {
                Ok(Ok(w)) => states.push(w),
                // Stopped because this thread stopped listening: never the cause.
                Ok(Err(e)) if is_stopped(&e) => {}
                Ok(Err(e)) => {
                    read_error.get_or_insert(e);
                }
                Err(_) => return Err(Error::Internal("an identity reading thread panicked".into())),
            }
        }
        match (read_error, failed) {
            (Some(e), _) | (None, Some(e)) => Err(e),
            (None, None) if states.len() < threads => Err(stopped()),
            (None, None) => Ok(states),
        }
    })
}

fn is_stopped(e: &Error) -> bool {
    matches!(e, Error::Internal(m) if m == "the identity sources stopped being read")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(sources: &[u32], threads: usize) -> Result<(Vec<(usize, u32)>, usize)> {
        let mut taken = Vec::new();
        let states = read_in_order(
            sources,
            threads,
            || 0usize,
            |sent: &mut usize, _, &n, tx| {
                for k in 0..n {
                    if n == 13 && k == 5 {
                        return Err(Error::Usage("source 13 is unreadable".into()));
                    }
                    tx.send(n * 100 + k)?;
                    *sent += 1;
                }
                Ok(())
            },
            |i, item| {
                if item == 7_00 + 3 {
                    return Err(Error::Usage("item 703 is refused".into()));
                }
                taken.push((i, item));
                Ok(())
            },
        )?;
        Ok((taken, states.iter().sum()))
    }

    #[test]
    fn items_are_taken_in_source_order_whatever_the_threads() {
        let sources = [3u32, 0, 40, 1, 25, 2, 9];
        let want: Vec<(usize, u32)> =
            sources.iter().enumerate().flat_map(|(i, &n)| (0..n).map(move |k| (i, n * 100 + k))).collect();
        for threads in [1, 2, 3, 8] {
            let (taken, sent) = numbers(&sources, threads).unwrap();
            assert_eq!(taken, want, "{threads} threads");
            assert_eq!(sent, want.len());
        }
        assert_eq!(numbers(&[], 2).unwrap().0, vec![]);
    }

    #[test]
    fn a_reading_error_and_a_taking_error_reach_the_caller() {
        for threads in [1, 2, 3] {
            let e = numbers(&[4, 13, 40, 2], threads).unwrap_err();
            assert!(e.to_string().contains("source 13 is unreadable"), "{e}");
            let e = numbers(&[4, 20, 7, 2], threads).unwrap_err();
            assert!(e.to_string().contains("item 703 is refused"), "{e}");
        }
    }
}
