//! The pipeline of `persona gen`: prepares the output folders, writes the dimension tables, then
//! generates the users in chunks on worker threads and writes each per-user table, in chunk order,
//! on a writer thread of its own; reports progress and sums up what was written.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use arrow::record_batch::RecordBatch;

use super::batches::{Chunk, channels_batch, products_batch};
use super::customers::generate_chunk;
use super::files::{ROW_GROUP_ROWS, TableFileWriter, TableStats};
use super::model::Model;
use super::{GenOptions, GenSummary};
use crate::error::{Error, IoContext, Result};
use crate::tables::Table;

/// Users per generation chunk; each chunk has its own RNG stream, so output does not depend on
/// how chunks are scheduled.
const CHUNK_USERS: u64 = 65_536;
/// Chunks generated concurrently (output is identical for any value).
const GENERATOR_THREADS: u64 = 2;
/// Users files, and the products and channels files, hold at most a million rows.
pub(super) const USERS_PER_FILE: usize = 1_000_000;
/// Fact files hold at most 16 row groups.
pub(super) const FACT_ROWS_PER_FILE: usize = 16 * ROW_GROUP_ROWS;

/// Generates the synthetic data set described in `docs/generator.md` into `opts.out`.
///
/// `progress(users_done)` is called from time to time (at least every 64k users); it must be cheap.
pub fn generate(opts: &GenOptions, progress: &(dyn Fn(u64) + Sync)) -> Result<GenSummary> {
    generate_with(opts, progress, LAYOUT)
}

/// Chunk and file sizes; fixed in production, small in tests to exercise chunking and rotation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub(super) chunk_users: u64,
    pub(super) users_per_file: usize,
    pub(super) fact_rows_per_file: usize,
}

const LAYOUT: Layout =
    Layout { chunk_users: CHUNK_USERS, users_per_file: USERS_PER_FILE, fact_rows_per_file: FACT_ROWS_PER_FILE };

/// [`generate`] with the given chunk and file sizes.
pub(super) fn generate_with(opts: &GenOptions, progress: &(dyn Fn(u64) + Sync), layout: Layout) -> Result<GenSummary> {
    prepare_out_dir(&opts.out)?;
    let model = Model::new(opts.seed)?;

    let mut products = TableFileWriter::new(Table::Products, &opts.out, opts.format, USERS_PER_FILE);
    products.write(&products_batch(&model.products)?)?;
    let products = products.finish()?;
    let mut channels = TableFileWriter::new(Table::Channels, &opts.out, opts.format, USERS_PER_FILE);
    channels.write(&channels_batch()?)?;
    let channels = channels.finish()?;

    progress(0);
    let [users, purchases, events, tags] = run_pipeline(&model, opts, progress, layout)?;
    let identities =
        super::identities::write(opts.seed, opts.users, &opts.out, opts.format, layout.fact_rows_per_file, |i| {
            super::customers::phone(&model, i)
        })?;

    let all = [users, products, channels, purchases, events, tags, identities];
    Ok(GenSummary {
        rows: Table::ALL.iter().zip(&all).map(|(t, s)| (t.name(), s.rows)).collect(),
        files: all.iter().map(|s| s.files).sum(),
        bytes: all.iter().map(|s| s.bytes).sum(),
    })
}

/// Refuses an output directory that already holds generated data; creates the table folders.
fn prepare_out_dir(out: &Path) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(Error::Usage(format!(
                "{} exists and is not a directory; remove it or choose another --out",
                out.display()
            )));
        }
        for table in Table::ALL {
            let dir = out.join(table.name());
            if !dir.exists() {
                continue;
            }
            let non_empty = !dir.is_dir() || std::fs::read_dir(&dir).io_context("read", &dir)?.next().is_some();
            if non_empty {
                return Err(Error::Usage(format!(
                    "{} already contains generated data ({table}/); remove it or choose another --out",
                    out.display()
                )));
            }
        }
    }
    for table in Table::ALL {
        let dir = out.join(table.name());
        std::fs::create_dir_all(&dir).io_context("create directory", &dir)?;
    }
    Ok(())
}

/// Spawns a thread that writes every batch it receives to `files`.
fn spawn_writer<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut files: TableFileWriter,
) -> (SyncSender<RecordBatch>, std::thread::ScopedJoinHandle<'scope, Result<TableStats>>) {
    let (tx, rx): (SyncSender<RecordBatch>, Receiver<RecordBatch>) = sync_channel(1);
    let handle = scope.spawn(move || {
        for batch in rx {
            files.write(&batch)?;
        }
        files.finish()
    });
    (tx, handle)
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle.join().unwrap_or_else(|_| Err(Error::Internal("a generator thread panicked".into())))
}

/// Generates the per-user tables chunk by chunk on worker threads and writes them, in chunk
/// order, on one writer thread per table. Returns the stats of users, purchases, events, tags.
fn run_pipeline(
    model: &Model,
    opts: &GenOptions,
    progress: &(dyn Fn(u64) + Sync),
    layout: Layout,
) -> Result<[TableStats; 4]> {
    let users = opts.users;
    let chunk_users = layout.chunk_users.max(1);
    let chunks = users.div_ceil(chunk_users);
    let workers = GENERATOR_THREADS.min(chunks).max(1);
    let files = |table, max_rows| TableFileWriter::new(table, &opts.out, opts.format, max_rows);

    std::thread::scope(|scope| {
        let (users_tx, users_h) = spawn_writer(scope, files(Table::Users, layout.users_per_file));
        let (purchases_tx, purchases_h) = spawn_writer(scope, files(Table::Purchases, layout.fact_rows_per_file));
        let (events_tx, events_h) = spawn_writer(scope, files(Table::Events, layout.fact_rows_per_file));
        let (tags_tx, tags_h) = spawn_writer(scope, files(Table::UserTags, layout.fact_rows_per_file));

        let mut generators = Vec::new();
        let mut chunk_rxs = Vec::new();
        for w in 0..workers {
            let (tx, rx) = sync_channel::<Result<Chunk>>(1);
            chunk_rxs.push(rx);
            generators.push(scope.spawn(move || {
                let mut k = w;
                while k < chunks {
                    let first = k.saturating_mul(chunk_users);
                    let end = first.saturating_add(chunk_users).min(users);
                    let chunk = generate_chunk(model, k, first, end);
                    let failed = chunk.is_err();
                    if tx.send(chunk).is_err() || failed {
                        break;
                    }
                    k += workers;
                }
                Ok(())
            }));
        }

        let stopped = || Error::Internal("a writer thread stopped early".into());
        let routed = (|| -> Result<()> {
            let mut next_order = 1u64;
            for k in 0..chunks {
                let rx = &chunk_rxs[(k % workers) as usize];
                let chunk = rx.recv().map_err(|_| Error::Internal("a generator thread stopped early".into()))??;
                let purchases = chunk.purchases.number(&mut next_order)?;
                users_tx.send(chunk.users).map_err(|_| stopped())?;
                purchases_tx.send(purchases).map_err(|_| stopped())?;
                events_tx.send(chunk.events).map_err(|_| stopped())?;
                tags_tx.send(chunk.tags).map_err(|_| stopped())?;
                progress((k + 1).saturating_mul(chunk_users).min(users));
            }
            Ok(())
        })();
        drop((users_tx, purchases_tx, events_tx, tags_tx));
        drop(chunk_rxs);

        // A writer's own error explains a routing failure better than "stopped early".
        let written = [join(users_h), join(purchases_h), join(events_h), join(tags_h)];
        let generated: Vec<Result<()>> = generators.into_iter().map(join).collect();
        let mut stats = [TableStats::default(); 4];
        for (slot, result) in stats.iter_mut().zip(written) {
            *slot = result?;
        }
        routed?;
        for g in generated {
            g?;
        }
        Ok(stats)
    })
}
