//! Writing an audience's rows to files for campaign tools: Parquet or CSV by the file's extension,
//! streamed batch by batch (bounded memory), split into parts of at most N rows when asked, and
//! atomic: every part is written under a temporary name in the target directory and renamed only
//! when all parts are complete, so a failure leaves no partial file and the previous files intact.
//!
//! The rows are the members' (or, with `CHANGES SINCE`, the added members' followed by the removed
//! users' `user_id`, with a `change` column saying which), one row per user: a query with several
//! rows per user (over a fact table) exports each user's first row in the query's order. A
//! `BY PERSON` audience writes one row per person with all its contact points instead.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use roaring::RoaringBitmap;

use crate::audience::evaluate::Export;
use crate::audience::members::{FileStage, for_each_member_batch, for_each_member_staged};
use crate::error::{Error, IoContext, Result};
use crate::query::{ExportCompression, QuerySession};
use crate::tables::{Table, USER_ID, cast_to_schema};

/// A file format for audience files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Csv,
}

impl FileFormat {
    /// The format a path's extension names.
    pub fn of_path(path: &Path) -> Result<FileFormat> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("parquet") => Ok(FileFormat::Parquet),
            Some("csv") => Ok(FileFormat::Csv),
            _ => Err(Error::Usage(format!(
                "{}: an audience file must end in .parquet or .csv (the extension chooses the format)",
                path.display()
            ))),
        }
    }
}

/// Which rows to write.
#[derive(Debug)]
pub enum Rows {
    /// These members.
    Members(RoaringBitmap),
    /// Members added since a version, then users removed since it.
    Changes { added: RoaringBitmap, removed: RoaringBitmap },
}

/// What was written.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub rows: u64,
}

/// Writes `rows` of an audience exported as `export` to `target` (parts `stem-00000.ext`, ...
/// when `max_rows_per_file` is given), Parquet compressed as `compression` says (default: the
/// session's `persona.export_compression`).
pub async fn write_audience(
    session: &QuerySession,
    export: &Export,
    rows: &Rows,
    target: &Path,
    max_rows_per_file: Option<u64>,
    compression: Option<ExportCompression>,
) -> Result<Written> {
    let compression = match compression {
        Some(c) => c,
        None => session.export_compression()?,
    };
    let format = FileFormat::of_path(target)?;
    if let Export::Persons { audience, since } = export {
        let sql = crate::audience::persons::persons_export_sql(audience, *since);
        let frame = session.context().sql(&sql).await?;
        let schema = plain_strings(frame.schema().as_arrow());
        let mut sink = PartSink::new(target, format, compression, Arc::clone(&schema), max_rows_per_file)?;
        let write = async || -> Result<()> {
            let mut stream = frame.execute_stream().await?;
            while let Some(batch) = stream.try_next().await? {
                sink.write(&RecordBatch::try_new(Arc::clone(&schema), cast_to_schema(batch.columns(), &schema)?)?)?;
            }
            Ok(())
        };
        return match write().await {
            Ok(()) => sink.commit(session.removals()),
            Err(e) => {
                sink.abandon();
                Err(e)
            }
        };
    }
    let base_schema = match export {
        Export::UsersColumns(columns) => {
            let users = crate::tables::sql_schema(&session.snapshot().manifest().columns(Table::Users));
            Arc::new(
                users
                    .project(&columns.iter().map(|c| users.index_of(c)).collect::<std::result::Result<Vec<_>, _>>()?)?,
            )
        }
        Export::Query(plan) => plain_strings(plan.schema().as_arrow()),
        Export::Persons { .. } => return Err(Error::Internal("a persons export reached the users writer".into())),
    };
    let with_change = matches!(rows, Rows::Changes { .. });
    let schema: SchemaRef = if with_change {
        let mut fields: Vec<Field> =
            base_schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        fields.push(Field::new("change", DataType::Utf8, false));
        Arc::new(Schema::new(fields))
    } else {
        Arc::clone(&base_schema)
    };
    let mut sink = PartSink::new(target, format, compression, Arc::clone(&schema), max_rows_per_file)?;
    let result = write_rows(session, export, rows, &schema, with_change, &mut sink).await;
    match result {
        Ok(()) => sink.commit(session.removals()),
        Err(e) => {
            sink.abandon();
            Err(e)
        }
    }
}

async fn write_rows(
    session: &QuerySession,
    export: &Export,
    rows: &Rows,
    schema: &SchemaRef,
    with_change: bool,
    sink: &mut PartSink,
) -> Result<()> {
    let (keep, removed) = match rows {
        Rows::Members(set) => (set, None),
        Rows::Changes { added, removed } => (added, Some(removed)),
    };
    let label = |batch: &RecordBatch, change: &str| -> Result<RecordBatch> {
        let mut columns = cast_to_schema(batch.columns(), schema)?;
        if !with_change {
            return Ok(RecordBatch::try_new(Arc::clone(schema), columns)?);
        }
        columns.push(Arc::new(StringArray::from(vec![change; batch.num_rows()])));
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    };
    match export {
        Export::UsersColumns(columns) => {
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            let files = crate::query::users_files_of(&session.snapshot())?;
            if removed.is_none()
                && let Some(factory) = sink.row_groups()?
            {
                // One Parquet file: the readers also encode the row groups.
                let stage = EncodeRowGroups { factory, schema: Arc::clone(schema) };
                for_each_member_staged(&files, keep, &names, &stage, |(chunks, rows)| {
                    sink.append_row_group(chunks, rows)
                })?;
            } else {
                for_each_member_batch(&files, keep, &names, |batch, _| sink.write(&label(batch, "added")?))?;
            }
        }
        Export::Persons { .. } => return Err(Error::Internal("a persons export reached the users writer".into())),
        Export::Query(plan) => {
            // The members' user_ids, read once from the users files, decide which rows go out.
            let files = crate::query::users_files_of(&session.snapshot())?;
            let mut wanted: rustc_hash::FxHashSet<String> = rustc_hash::FxHashSet::default();
            wanted.reserve(keep.len() as usize);
            crate::audience::members::for_each_member_id(&files, keep, |_, user_id| {
                wanted.insert(user_id.to_string());
            })?;
            let user_col = plan.schema().fields().iter().position(|f| f.name() == USER_ID).expect("checked at plan");
            let mut stream = session.context().execute_logical_plan((**plan).clone()).await?.execute_stream().await?;
            while let Some(batch) = stream.try_next().await? {
                let ids = arrow::compute::cast(batch.column(user_col), &DataType::Utf8)?;
                let ids = ids.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                // An audience is a set of users: a user's first row (in the query's order, when
                // it has an ORDER BY) goes out, later rows of the same user do not.
                let mask: Vec<bool> =
                    (0..ids.len()).map(|row| ids.is_valid(row) && wanted.remove(ids.value(row))).collect();
                let kept = arrow::compute::filter_record_batch(&batch, &BooleanArray::from(mask))?;
                if kept.num_rows() > 0 {
                    sink.write(&label(&kept, "added")?)?;
                }
            }
        }
    }
    if let Some(removed) = removed {
        let files = crate::query::users_files_of(&session.snapshot())?;
        let user_col = schema.index_of(USER_ID)?;
        for_each_member_batch(&files, removed, &[USER_ID], |batch, _| {
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    if i == user_col {
                        arrow::compute::cast(batch.column(0), f.data_type()).map_err(Error::from)
                    } else if f.name() == "change" && i == schema.fields().len() - 1 {
                        Ok(Arc::new(StringArray::from(vec!["removed"; batch.num_rows()])) as ArrayRef)
                    } else {
                        Ok(new_null_array(f.data_type(), batch.num_rows()))
                    }
                })
                .collect::<Result<_>>()?;
            sink.write(&RecordBatch::try_new(Arc::clone(schema), columns)?)
        })?;
    }
    Ok(())
}

/// Rows after which an encoded row group is handed over (the writer appends and syncs it while
/// the readers go on; a users file with 1 member in 9 makes about two).
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Encodes the members of each users file into Parquet row groups of about [`ROW_GROUP_ROWS`]
/// rows (never spanning two users files), on the reader threads, so that the writing thread
/// only appends encoded bytes.
struct EncodeRowGroups {
    factory: Arc<ArrowRowGroupWriterFactory>,
    schema: SchemaRef,
}

struct RowGroupInProgress {
    writers: Vec<ArrowColumnWriter>,
    rows: usize,
}

impl FileStage for EncodeRowGroups {
    type State = RowGroupInProgress;
    type Out = (Vec<ArrowColumnChunk>, usize);

    fn begin(&self) -> Result<RowGroupInProgress> {
        Ok(RowGroupInProgress { writers: self.factory.create_column_writers(0)?, rows: 0 })
    }

    fn batch(&self, state: &mut RowGroupInProgress, batch: RecordBatch, _: Vec<u32>) -> Result<Option<Self::Out>> {
        let columns = cast_to_schema(batch.columns(), &self.schema)?;
        let mut writers = state.writers.iter_mut();
        for (field, column) in self.schema.fields().iter().zip(&columns) {
            for leaf in compute_leaves(field, column)? {
                writers
                    .next()
                    .ok_or_else(|| Error::Internal("more leaves than column writers".into()))?
                    .write(&leaf)?;
            }
        }
        state.rows += batch.num_rows();
        if state.rows < ROW_GROUP_ROWS {
            return Ok(None);
        }
        let full = std::mem::replace(state, self.begin()?);
        self.end(full)
    }

    fn end(&self, state: RowGroupInProgress) -> Result<Option<Self::Out>> {
        if state.rows == 0 {
            return Ok(None);
        }
        let chunks = state.writers.into_iter().map(ArrowColumnWriter::close).collect::<std::result::Result<_, _>>()?;
        Ok(Some((chunks, state.rows)))
    }
}

/// `schema` with string views as plain strings.
fn plain_strings(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View | DataType::LargeUtf8 => f.as_ref().clone().with_data_type(DataType::Utf8),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Files being written under temporary names, renamed into place together.
struct PartSink {
    target: PathBuf,
    format: FileFormat,
    compression: ExportCompression,
    schema: SchemaRef,
    max_rows: Option<u64>,
    /// (temporary path, final path) of the parts closed so far.
    done: Vec<(PathBuf, PathBuf)>,
    current: Option<OpenPart>,
    rows: u64,
}

struct OpenPart {
    tmp: PathBuf,
    target: PathBuf,
    writer: PartWriter,
    rows: u64,
}

enum PartWriter {
    Parquet(ArrowWriter<File>),
    /// Parquet written as row groups encoded elsewhere ([`EncodeRowGroups`]).
    RowGroups(SerializedFileWriter<File>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
}

impl PartSink {
    fn new(
        target: &Path,
        format: FileFormat,
        compression: ExportCompression,
        schema: SchemaRef,
        max_rows: Option<u64>,
    ) -> Result<PartSink> {
        if max_rows == Some(0) {
            return Err(Error::Usage("--max-rows-per-file must be at least 1".into()));
        }
        // The folder is created as `persona materialize --out` creates its own.
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            if dir.exists() {
                return Err(Error::Usage(format!("{} is not a directory", dir.display())));
            }
            std::fs::create_dir_all(dir).io_context("create the directory", dir)?;
        }
        Ok(PartSink {
            target: target.to_path_buf(),
            format,
            compression,
            schema,
            max_rows,
            done: Vec::new(),
            current: None,
            rows: 0,
        })
    }

    /// The final path of part `n` (the target itself when files are not split).
    fn part_path(&self, n: usize) -> PathBuf {
        if self.max_rows.is_none() {
            return self.target.clone();
        }
        self.numbered_part(n)
    }

    /// `stem-0000n.ext` beside the target.
    fn numbered_part(&self, n: usize) -> PathBuf {
        let stem = self.target.file_stem().and_then(|s| s.to_str()).unwrap_or("audience");
        let ext = self.target.extension().and_then(|s| s.to_str()).unwrap_or("parquet");
        self.target.with_file_name(format!("{stem}-{n:05}.{ext}"))
    }

    fn open(&mut self) -> Result<()> {
        let target = self.part_path(self.done.len());
        let name = target.file_name().and_then(|s| s.to_str()).unwrap_or("audience");
        let tmp = target.with_file_name(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
        let file = File::create(&tmp).io_context("create", &tmp)?;
        let writer = match self.format {
            FileFormat::Parquet => {
                // Unique columns get no dictionary (the writer would build one per row group only
                // to drop it) and no statistics (min and max of phone numbers help no reader;
                // comparing every value cost a tenth of an export); other columns get statistics
                // per column chunk only: campaign files are read whole.
                let mut props = WriterProperties::builder()
                    .set_compression(self.compression.parquet())
                    .set_statistics_enabled(EnabledStatistics::Chunk);
                for column in crate::tables::UNIQUE_COLUMNS {
                    if self.schema.field_with_name(column).is_ok() {
                        props = props
                            .set_column_dictionary_enabled(ColumnPath::from(*column), false)
                            .set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::None);
                    }
                }
                let props = props.build();
                PartWriter::Parquet(ArrowWriter::try_new(file, Arc::clone(&self.schema), Some(props))?)
            }
            FileFormat::Csv => {
                PartWriter::Csv(arrow::csv::WriterBuilder::new().with_header(true).build(BufWriter::new(file)))
            }
        };
        self.current = Some(OpenPart { tmp, target, writer, rows: 0 });
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if let (Some(part), Some(max)) = (&self.current, self.max_rows)
                && part.rows >= max
            {
                self.close()?;
            }
            if self.current.is_none() {
                self.open()?;
            }
            let part = self.current.as_mut().expect("opened");
            let room = self.max_rows.map_or(usize::MAX, |m| (m - part.rows) as usize);
            let take = room.min(batch.num_rows() - offset);
            let slice = batch.slice(offset, take);
            match &mut part.writer {
                PartWriter::Parquet(w) => w.write(&slice)?,
                PartWriter::Csv(w) => w.write(&slice)?,
                PartWriter::RowGroups(_) => {
                    return Err(Error::Internal("rows written to a file of encoded row groups".into()));
                }
            }
            part.rows += take as u64;
            self.rows += take as u64;
            offset += take;
        }
        Ok(())
    }

    /// When the sink writes one unsplit Parquet file, turns it into one written as row groups
    /// encoded by the caller with the returned factory, appended with
    /// [`PartSink::append_row_group`]; `None` otherwise (split parts, CSV).
    fn row_groups(&mut self) -> Result<Option<Arc<ArrowRowGroupWriterFactory>>> {
        if self.format != FileFormat::Parquet || self.max_rows.is_some() || !self.done.is_empty() {
            return Ok(None);
        }
        if self.current.is_none() {
            self.open()?;
        }
        let OpenPart { tmp, target, writer, rows } = self.current.take().expect("opened");
        let PartWriter::Parquet(writer) = writer else {
            return Err(Error::Internal("the part is not a Parquet file".into()));
        };
        let (writer, factory) = writer.into_serialized_writer()?;
        self.current = Some(OpenPart { tmp, target, writer: PartWriter::RowGroups(writer), rows });
        Ok(Some(Arc::new(factory)))
    }

    /// Appends a row group of `rows` rows encoded with the factory of [`PartSink::row_groups`].
    fn append_row_group(&mut self, chunks: Vec<ArrowColumnChunk>, rows: usize) -> Result<()> {
        let part = self.current.as_mut().ok_or_else(|| Error::Internal("no part is open".into()))?;
        let PartWriter::RowGroups(writer) = &mut part.writer else {
            return Err(Error::Internal("the part does not take encoded row groups".into()));
        };
        let mut group = writer.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        // Start making the file durable while the readers encode the next row groups: the fsync
        // at the end then waits for the last one only.
        writer.inner().sync_data().io_context("fsync", &part.tmp)?;
        part.rows += rows as u64;
        self.rows += rows as u64;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        let Some(part) = self.current.take() else { return Ok(()) };
        let file = match part.writer {
            PartWriter::Parquet(w) => w.into_inner()?,
            PartWriter::RowGroups(w) => w.into_inner()?,
            PartWriter::Csv(w) => {
                let mut buffered = w.into_inner();
                buffered.flush().io_context("write", &part.tmp)?;
                buffered.into_inner().map_err(|e| Error::Io {
                    op: "write",
                    path: part.tmp.clone(),
                    source: e.into_error(),
                })?
            }
        };
        file.sync_all().io_context("fsync", &part.tmp)?;
        self.done.push((part.tmp, part.target));
        Ok(())
    }

    /// Closes the last part and renames every part into place (the files they replace are
    /// removed in the background, kept by `removals`); parts of an earlier, longer export beyond
    /// the new last one are removed.
    fn commit(mut self, removals: &crate::store::io::Removals) -> Result<Written> {
        if self.done.is_empty() && self.current.is_none() {
            // No rows: still a file, with the header or schema, so that tools see "empty", not "missing".
            self.open()?;
        }
        if let Err(e) = self.close() {
            self.abandon();
            return Err(e);
        }
        let mut written = Written { files: Vec::new(), rows: self.rows };
        for (tmp, target) in std::mem::take(&mut self.done) {
            crate::store::io::rename_over(&tmp, &target, removals)?;
            written.files.push(target);
        }
        // What an earlier export to the same target left in the other layout (one file, or
        // parts) or beyond the new last part would be read with these files: it goes.
        let split = self.max_rows.is_some();
        if split && self.target.is_file() {
            std::fs::remove_file(&self.target).io_context("remove the earlier unsplit file", &self.target)?;
        }
        let mut n = if split { written.files.len() } else { 0 };
        loop {
            let stale = self.numbered_part(n);
            if !stale.is_file() {
                break;
            }
            std::fs::remove_file(&stale).io_context("remove the stale part", &stale)?;
            n += 1;
        }
        if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = crate::store::io::sync_dir(dir);
        }
        Ok(written)
    }

    /// Removes every temporary file.
    fn abandon(&mut self) {
        if let Some(part) = self.current.take() {
            drop(part.writer);
            let _ = std::fs::remove_file(&part.tmp);
        }
        for (tmp, _) in self.done.drain(..) {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

impl Drop for PartSink {
    fn drop(&mut self) {
        self.abandon();
    }
}
