//! Input files as a stream of typed record batches: CSV (with header; UTF-8 with or without a
//! BOM, LF or CRLF, quoted fields holding commas, quotes and newlines) and Parquet. Every row keeps
//! its location (CSV line, or Parquet row group and row) so that errors can name it.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::PageIndexPolicy;

use crate::error::{Error, InputLocation, IoContext, Result};
use crate::ingest::contract::{ColumnPlan, TypeInference, parse_bool_value, parse_date, parse_timestamp_micros};
use crate::tables::{ColumnType, Table, sql_schema};

/// Rows per batch read from an input.
pub const BATCH_ROWS: usize = 16_384;

/// The formats the importer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Csv,
    Parquet,
}

/// One input file and the table it loads into.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub table: Table,
    pub format: InputFormat,
    pub size: u64,
}

/// Expands the command line's files and folders into input files with their tables. A folder named
/// after a table loads all its files into that table; any other folder is searched one level deep
/// for files and folders named after tables. `table` forces every file into one table.
pub fn resolve_inputs(inputs: &[PathBuf], table: Option<Table>) -> Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).io_context("read", input)?;
        if meta.is_file() {
            let t = match table {
                Some(t) => t,
                None => table_of(input).ok_or_else(|| unrecognised(input))?,
            };
            out.push(source(input, t)?);
        } else if let Some(t) = table.or_else(|| dir_table(input)) {
            for file in data_files_in(input)? {
                out.push(source(&file, t)?);
            }
        } else {
            let mut entries = list_dir(input)?;
            entries.sort();
            let before = out.len();
            for entry in entries {
                if entry.is_dir() {
                    if let Some(t) = dir_table(&entry) {
                        for file in data_files_in(&entry)? {
                            out.push(source(&file, t)?);
                        }
                    }
                } else if format_of(&entry).is_some() {
                    let t = table_of(&entry).ok_or_else(|| unrecognised(&entry))?;
                    out.push(source(&entry, t)?);
                }
            }
            if out.len() == before {
                return Err(Error::Arguments(format!(
                    "{} holds no CSV or Parquet files named after a table ({})",
                    input.display(),
                    Table::ALL.map(Table::name).join(", ")
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Arguments("no input files were given".into()));
    }
    Ok(out)
}

fn unrecognised(path: &Path) -> Error {
    Error::Arguments(format!(
        "cannot tell which table {} belongs to: name it after a table ({}) or pass --table",
        path.display(),
        Table::ALL.map(Table::name).join(", ")
    ))
}

fn source(path: &Path, table: Table) -> Result<SourceFile> {
    let format = format_of(path)
        .ok_or_else(|| Error::Arguments(format!("{} is neither a .csv nor a .parquet file", path.display())))?;
    let size = std::fs::metadata(path).io_context("read", path)?.len();
    Ok(SourceFile { path: path.to_path_buf(), table, format, size })
}

fn format_of(path: &Path) -> Option<InputFormat> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "csv" | "txt" | "tsv" => Some(InputFormat::Csv),
        "parquet" | "pq" => Some(InputFormat::Parquet),
        _ => None,
    }
}

fn table_of(path: &Path) -> Option<Table> {
    Table::from_file_stem(path.file_stem()?.to_str()?)
}

fn dir_table(path: &Path) -> Option<Table> {
    let name = path.file_name()?.to_str()?;
    Table::ALL.into_iter().find(|t| t.name() == name.to_ascii_lowercase())
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(std::fs::read_dir(dir)
        .io_context("list", dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect())
}

fn data_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> =
        list_dir(dir)?.into_iter().filter(|p| p.is_file() && format_of(p).is_some()).collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Arguments(format!("{} holds no CSV or Parquet files", dir.display())));
    }
    Ok(files)
}

/// The number of rows of a Parquet input (from its footer), or 0 when it is not known cheaply.
pub fn row_count_hint(src: &SourceFile) -> u64 {
    match src.format {
        InputFormat::Parquet => {
            parquet_builder(src).map(|b| b.metadata().file_metadata().num_rows().max(0) as u64).unwrap_or(0)
        }
        InputFormat::Csv => 0,
    }
}

/// True if `src` is a Parquet file whose columns are exactly the contract's columns of `table`,
/// in order and with the store's types, so that it can be kept as it is.
pub fn matches_contract(src: &SourceFile, table: Table) -> Result<bool> {
    if src.format != InputFormat::Parquet {
        return Ok(false);
    }
    let builder = parquet_builder(src)?;
    let fields = builder.schema().fields();
    let columns = table.columns();
    Ok(fields.len() == columns.len()
        && fields.iter().zip(columns).all(|(f, c)| f.name() == c.name && f.data_type() == &c.ty.arrow_type()))
}

/// For each column of a Parquet input (file order): true if its footer proves the column has no
/// NULL and, for text, no empty value in any row group (every row group has statistics with a
/// null count of 0 and a non-empty minimum), so that checking its required values needs no
/// decoding. Empty for other inputs.
pub fn proven_present(src: &SourceFile) -> Result<Vec<bool>> {
    if src.format != InputFormat::Parquet {
        return Ok(Vec::new());
    }
    let builder = parquet_builder(src)?;
    let fields = builder.schema().fields().clone();
    let groups = builder.metadata().row_groups();
    Ok(fields
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let is_text = field.data_type() == &DataType::Utf8;
            groups.iter().all(|rg| {
                rg.columns().get(index).and_then(|c| c.statistics()).is_some_and(|st| {
                    st.null_count_opt() == Some(0) && (!is_text || st.min_bytes_opt().is_some_and(|m| !m.is_empty()))
                })
            })
        })
        .collect())
}

/// The column names of an input, in file order.
pub fn read_header(src: &SourceFile) -> Result<Vec<String>> {
    match src.format {
        InputFormat::Csv => {
            let mut rdr = csv_reader(src)?;
            csv_header(&mut rdr, &src.path)
        }
        InputFormat::Parquet => {
            let builder = parquet_builder(src)?;
            Ok(builder.schema().fields().iter().map(|f| f.name().clone()).collect())
        }
    }
}

/// Infers the types of the given columns. CSV files are read once in full for this; Parquet files
/// carry their types.
pub fn infer_types(src: &SourceFile, columns: &[usize]) -> Result<Vec<ColumnType>> {
    match src.format {
        InputFormat::Csv => {
            let mut rdr = csv_reader(src)?;
            let header = csv_header(&mut rdr, &src.path)?;
            let mut inference = vec![TypeInference::default(); columns.len()];
            let mut record = csv::ByteRecord::new();
            while read_record(&mut rdr, &mut record, src, header.len())? {
                for (k, &col) in columns.iter().enumerate() {
                    let value = field_str(&record, col, src, &header[col])?;
                    inference[k].observe(value);
                }
            }
            Ok(inference.iter().map(TypeInference::result).collect())
        }
        InputFormat::Parquet => {
            let builder = parquet_builder(src)?;
            let schema = builder.schema();
            columns
                .iter()
                .map(|&i| {
                    let field = schema.field(i);
                    ColumnType::from_arrow(field.data_type()).ok_or_else(|| {
                        Error::input(
                            &src.path,
                            InputLocation::File,
                            Some(field.name()),
                            format!("the Parquet type {} is not supported for a custom column", field.data_type()),
                        )
                    })
                })
                .collect()
        }
    }
}

/// A batch of input rows converted to their store types, with the rows' locations.
#[derive(Debug)]
pub struct TypedBatch {
    /// Columns in the order of the file's [`ColumnPlan`].
    pub batch: RecordBatch,
    locations: Locations,
}

#[derive(Debug)]
enum Locations {
    /// Byte offsets (in the file, BOM included) where each CSV record starts; the physical line
    /// is counted from them only when an error needs it.
    CsvBytes {
        path: PathBuf,
        offsets: Vec<u64>,
    },
    Parquet {
        first_row: u64,
        row_group_starts: Arc<Vec<u64>>,
    },
}

impl TypedBatch {
    pub fn location(&self, row: usize) -> InputLocation {
        match &self.locations {
            Locations::CsvBytes { path, offsets } => InputLocation::Line(physical_line(path, offsets[row])),
            Locations::Parquet { first_row, row_group_starts } => {
                let global = first_row + row as u64;
                let rg = row_group_starts.partition_point(|&s| s <= global).saturating_sub(1);
                InputLocation::RowGroup { row_group: rg, row: (global - row_group_starts[rg]) as usize }
            }
        }
    }
}

/// Reads an input file batch by batch, converting every value to its planned type.
pub struct BatchReader {
    src: SourceFile,
    plan: ColumnPlan,
    inner: Inner,
    /// Approximate bytes of the input consumed so far, for progress.
    pub bytes_done: u64,
}

enum Inner {
    Csv { rdr: csv::Reader<Box<dyn Read + Send>>, header_len: usize, record: csv::ByteRecord, bom_len: u64 },
    Parquet { rdr: ParquetRecordBatchReader, rows_done: u64, total_rows: u64, row_group_starts: Arc<Vec<u64>> },
}

impl BatchReader {
    pub fn open(src: &SourceFile, plan: ColumnPlan) -> Result<BatchReader> {
        Self::open_columns(src, plan, None)
    }

    /// Like [`BatchReader::open`], decoding only the columns at `only` (sorted file positions) of
    /// a Parquet input; batches then hold those columns only.
    pub fn open_columns(src: &SourceFile, mut plan: ColumnPlan, only: Option<&[usize]>) -> Result<BatchReader> {
        let inner = match src.format {
            InputFormat::Csv => {
                let mut rdr = csv_reader(src)?;
                let header = csv_header(&mut rdr, &src.path)?;
                let bom_len = bom_len(&src.path)?;
                Inner::Csv { rdr, header_len: header.len(), record: csv::ByteRecord::new(), bom_len }
            }
            InputFormat::Parquet => {
                // With the page index, when the file has one: queries read it (and a kept file is
                // stored as it is), so a damaged one must be refused here rather than fail every
                // later query. A file written without one loads as before.
                let has_page_index = parquet_builder(src)?
                    .metadata()
                    .row_groups()
                    .iter()
                    .flat_map(|rg| rg.columns())
                    .any(|c| c.offset_index_offset().is_some() || c.column_index_offset().is_some());
                let policy = if has_page_index { PageIndexPolicy::Required } else { PageIndexPolicy::Skip };
                let options = ArrowReaderOptions::new().with_page_index_policy(policy);
                let mut builder = parquet_builder_with(src, options)?.with_batch_size(BATCH_ROWS);
                if let Some(only) = only {
                    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), only.iter().copied());
                    builder = builder.with_projection(mask);
                    plan.columns = only.iter().filter_map(|&i| plan.columns.get(i).cloned()).collect();
                }
                let mut starts = Vec::with_capacity(builder.metadata().num_row_groups());
                let mut total = 0u64;
                for rg in builder.metadata().row_groups() {
                    starts.push(total);
                    total += rg.num_rows() as u64;
                }
                let rdr = builder.build().map_err(|e| unreadable_parquet(src, e))?;
                Inner::Parquet { rdr, rows_done: 0, total_rows: total, row_group_starts: Arc::new(starts) }
            }
        };
        Ok(BatchReader { src: src.clone(), plan, inner, bytes_done: 0 })
    }

    /// The next batch, or `None` at the end of the file.
    pub fn next_batch(&mut self) -> Result<Option<TypedBatch>> {
        match &mut self.inner {
            Inner::Csv { rdr, header_len, record, bom_len } => {
                let mut builders: Vec<ColumnBuilder> =
                    self.plan.columns.iter().map(|c| ColumnBuilder::new(c.ty)).collect();
                let mut lines = Vec::with_capacity(BATCH_ROWS);
                while lines.len() < BATCH_ROWS && read_record(rdr, record, &self.src, *header_len)? {
                    let offset = record_offset(record, *bom_len);
                    for (i, builder) in builders.iter_mut().enumerate() {
                        let name = &self.plan.columns[i].name;
                        let value = field_str(record, i, &self.src, name)?;
                        builder.push(value).map_err(|msg| {
                            Error::input(
                                &self.src.path,
                                InputLocation::Line(physical_line(&self.src.path, offset)),
                                Some(name),
                                msg,
                            )
                        })?;
                    }
                    lines.push(offset);
                }
                self.bytes_done = rdr.position().byte();
                if lines.is_empty() {
                    return Ok(None);
                }
                let arrays: Vec<ArrayRef> = builders.into_iter().map(ColumnBuilder::finish).collect();
                let batch = RecordBatch::try_new(sql_schema(&self.plan.columns), arrays)?;
                Ok(Some(TypedBatch {
                    batch,
                    locations: Locations::CsvBytes { path: self.src.path.clone(), offsets: lines },
                }))
            }
            Inner::Parquet { rdr, rows_done, total_rows, row_group_starts } => {
                let Some(batch) = rdr.next() else { return Ok(None) };
                let batch = batch.map_err(|e| {
                    Error::input(
                        &self.src.path,
                        InputLocation::File,
                        None,
                        format!("the Parquet data cannot be read: {e}"),
                    )
                })?;
                let first_row = *rows_done;
                *rows_done += batch.num_rows() as u64;
                self.bytes_done = (self.src.size as f64 * (*rows_done as f64 / (*total_rows).max(1) as f64)) as u64;
                let locate = |row: usize| {
                    let tb = TypedBatch {
                        batch: RecordBatch::new_empty(batch.schema()),
                        locations: Locations::Parquet { first_row, row_group_starts: Arc::clone(row_group_starts) },
                    };
                    tb.location(row)
                };
                let mut arrays = Vec::with_capacity(self.plan.columns.len());
                for (i, col) in self.plan.columns.iter().enumerate() {
                    let converted = convert_array(batch.column(i), col.ty)
                        .map_err(|(row, msg)| Error::input(&self.src.path, locate(row), Some(&col.name), msg))?;
                    arrays.push(converted);
                }
                let batch = RecordBatch::try_new(sql_schema(&self.plan.columns), arrays)?;
                Ok(Some(TypedBatch {
                    batch,
                    locations: Locations::Parquet { first_row, row_group_starts: Arc::clone(row_group_starts) },
                }))
            }
        }
    }
}

fn unreadable_parquet(src: &SourceFile, e: impl std::fmt::Display) -> Error {
    Error::input(&src.path, InputLocation::File, None, format!("not a readable Parquet file ({e})"))
}

fn parquet_builder(src: &SourceFile) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    parquet_builder_with(src, ArrowReaderOptions::new())
}

fn parquet_builder_with(
    src: &SourceFile,
    options: ArrowReaderOptions,
) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(&src.path).io_context("open", &src.path)?;
    if src.size == 0 {
        return Err(Error::input(&src.path, InputLocation::File, None, "the file is empty"));
    }
    ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).map_err(|e| unreadable_parquet(src, e))
}

fn csv_reader(src: &SourceFile) -> Result<csv::Reader<Box<dyn Read + Send>>> {
    let file = File::open(&src.path).io_context("open", &src.path)?;
    let mut buf = BufReader::with_capacity(1 << 20, file);
    let head = buf.fill_buf().io_context("read", &src.path)?;
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        buf.consume(3);
    } else if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(Error::input(&src.path, InputLocation::File, None, "the file is UTF-16 encoded; save it as UTF-8"));
    }
    let delimiter = if src.path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv")) { b'\t' } else { b',' };
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .delimiter(delimiter)
        .buffer_capacity(1 << 20)
        .from_reader(Box::new(buf) as Box<dyn Read + Send>))
}

fn csv_header(rdr: &mut csv::Reader<Box<dyn Read + Send>>, path: &Path) -> Result<Vec<String>> {
    let header = rdr.byte_headers().map_err(|e| csv_error(path, e))?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].iter().all(u8::is_ascii_whitespace)) {
        return Err(Error::input(path, InputLocation::File, None, "the file is empty (a header row is expected)"));
    }
    header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            std::str::from_utf8(h).map(|s| s.trim().to_string()).map_err(|_| {
                Error::input(
                    path,
                    InputLocation::Line(1),
                    None,
                    format!("header field {} is not valid UTF-8 (is the file GBK-encoded? save it as UTF-8)", i + 1),
                )
            })
        })
        .collect()
}

fn read_record(
    rdr: &mut csv::Reader<Box<dyn Read + Send>>,
    record: &mut csv::ByteRecord,
    src: &SourceFile,
    header_len: usize,
) -> Result<bool> {
    match rdr.read_byte_record(record) {
        Ok(more) => {
            // A blank line at the end of the file reads as one empty field in some exports.
            if more && record.len() == 1 && record[0].is_empty() && header_len > 1 {
                return read_record(rdr, record, src, header_len);
            }
            Ok(more)
        }
        Err(e) => Err(csv_error(&src.path, e)),
    }
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let bom = bom_len(path).unwrap_or(0);
    let line = e.position().map(|p| physical_line(path, p.byte() + bom));
    match e.into_kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, pos } => Error::input(
            path,
            InputLocation::Line(pos.map(|p| physical_line(path, p.byte() + bom)).or(line).unwrap_or(0)),
            None,
            format!(
                "the line has {len} fields but the header has {expected_len} (a truncated line or an unquoted comma?)"
            ),
        ),
        csv::ErrorKind::Io(source) => Error::Io { op: "read", path: path.to_path_buf(), source },
        other => {
            Error::input(path, line.map(InputLocation::Line).unwrap_or(InputLocation::File), None, format!("{other:?}"))
        }
    }
}

fn field_str<'r>(record: &'r csv::ByteRecord, i: usize, src: &SourceFile, column: &str) -> Result<&'r str> {
    let raw = record.get(i).unwrap_or_default();
    std::str::from_utf8(raw).map_err(|_| {
        let offset = record_offset(record, bom_len(&src.path).unwrap_or(0));
        Error::input(
            &src.path,
            InputLocation::Line(physical_line(&src.path, offset)),
            Some(column),
            "the value is not valid UTF-8 (is the file GBK-encoded? save it as UTF-8)",
        )
    })
}

/// Where a record starts in the file (the csv reader counts bytes after the BOM we skipped).
fn record_offset(record: &csv::ByteRecord, bom_len: u64) -> u64 {
    record.position().map(|p| p.byte()).unwrap_or(0) + bom_len
}

/// 3 if the file starts with a UTF-8 BOM, else 0.
fn bom_len(path: &Path) -> Result<u64> {
    let mut head = [0u8; 3];
    let mut f = File::open(path).io_context("open", path)?;
    let n = f.read(&mut head).io_context("read", path)?;
    Ok(if n == 3 && head == [0xEF, 0xBB, 0xBF] { 3 } else { 0 })
}

/// The 1-based physical line of the record starting at a byte offset. Counted from the file only
/// when an error is reported: the csv reader's own line count is off with CRLF endings, and with
/// CRLF its record offsets point at the `\n` ending the previous line, so line breaks at the
/// offset itself are skipped as well (a record never starts with one).
fn physical_line(path: &Path, offset: u64) -> u64 {
    let Ok(file) = File::open(path) else { return 0 };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut pos, mut newlines) = (0u64, 0u64);
    loop {
        let Ok(buf) = reader.fill_buf() else { return 0 };
        if buf.is_empty() {
            return newlines + 1;
        }
        for &b in buf {
            if pos >= offset && b != b'\n' && b != b'\r' {
                return newlines + 1;
            }
            if b == b'\n' {
                newlines += 1;
            }
            pos += 1;
        }
        let n = buf.len();
        reader.consume(n);
    }
}

/// Builds one column from text values; an empty field is NULL.
enum ColumnBuilder {
    Utf8(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Utf8 => ColumnBuilder::Utf8(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 8)),
            ColumnType::Int32 => ColumnBuilder::Int32(Int32Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(BATCH_ROWS)),
            ColumnType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS)),
        }
    }

    fn push(&mut self, raw: &str) -> std::result::Result<(), String> {
        if let ColumnBuilder::Utf8(b) = self {
            if raw.is_empty() {
                b.append_null();
            } else {
                b.append_value(raw);
            }
            return Ok(());
        }
        let v = raw.trim();
        let empty = v.is_empty() || v.eq_ignore_ascii_case("null");
        let bad = |what: &str| format!("'{}' is not {what}", shorten(raw));
        match self {
            ColumnBuilder::Utf8(_) => unreachable!("handled above"),
            ColumnBuilder::Int32(b) => {
                if empty {
                    b.append_null()
                } else {
                    let n = v.parse::<i32>().map_err(|_| bad("a 32-bit integer"))?;
                    b.append_value(n)
                }
            }
            ColumnBuilder::Int64(b) => {
                if empty {
                    b.append_null()
                } else {
                    b.append_value(v.parse::<i64>().map_err(|_| bad("an integer"))?)
                }
            }
            ColumnBuilder::Float64(b) => {
                if empty {
                    b.append_null()
                } else {
                    let f = v.parse::<f64>().ok().filter(|f| f.is_finite()).ok_or_else(|| bad("a number"))?;
                    b.append_value(f)
                }
            }
            ColumnBuilder::Boolean(b) => {
                if empty {
                    b.append_null()
                } else {
                    b.append_value(parse_bool_value(v).ok_or_else(|| bad("a boolean (true/false)"))?)
                }
            }
            ColumnBuilder::Date(b) => {
                if empty {
                    b.append_null()
                } else {
                    b.append_value(parse_date(v).ok_or_else(|| bad("a date (YYYY-MM-DD)"))?)
                }
            }
            ColumnBuilder::Timestamp(b) => {
                if empty {
                    b.append_null()
                } else {
                    b.append_value(
                        parse_timestamp_micros(v).ok_or_else(|| bad("a timestamp (YYYY-MM-DD HH:MM:SS[.f][zone])"))?,
                    )
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Utf8(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Date(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(mut b) => Arc::new(b.finish()),
        }
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 { format!("{}…", s.chars().take(40).collect::<String>()) } else { s.to_string() }
}

/// Converts a Parquet column to its store type. On failure, returns the first offending row and a
/// message. Timestamps with a zone are taken as instants and stored in UTC.
fn convert_array(array: &ArrayRef, ty: ColumnType) -> std::result::Result<ArrayRef, (usize, String)> {
    let target = ty.arrow_type();
    if array.data_type() == &target {
        return Ok(Arc::clone(array));
    }
    let source_type = array.data_type().clone();
    let allowed = match (ty, &source_type) {
        (ColumnType::Int32 | ColumnType::Int64, t) => t.is_integer() || is_string(t),
        (ColumnType::Float64, t) => t.is_numeric() || is_string(t),
        (ColumnType::Boolean, t) => matches!(t, DataType::Boolean) || is_string(t),
        (ColumnType::Utf8, t) => is_string(t) || t.is_integer(),
        (ColumnType::Date, t) => {
            matches!(t, DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)) || is_string(t)
        }
        (ColumnType::Timestamp, t) => {
            matches!(t, DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)) || is_string(t)
        }
    };
    if !allowed {
        return Err((0, format!("the column has Parquet type {source_type}, which cannot hold {}", ty.sql_name())));
    }
    let input: ArrayRef = match &source_type {
        // Take the instant as UTC: re-type a zoned timestamp as zone-less without shifting it.
        DataType::Timestamp(unit, Some(_)) => {
            let zoned =
                cast_with_options(array, &DataType::Timestamp(*unit, Some("UTC".into())), &CastOptions::default())
                    .map_err(|e| (0, e.to_string()))?;
            let naive = arrow::array::make_array(
                zoned
                    .to_data()
                    .into_builder()
                    .data_type(DataType::Timestamp(*unit, None))
                    .build()
                    .map_err(|e| (0, e.to_string()))?,
            );
            if ty == ColumnType::Timestamp && *unit == TimeUnit::Microsecond {
                return Ok(naive);
            }
            naive
        }
        _ => Arc::clone(array),
    };
    let options = CastOptions { safe: true, ..Default::default() };
    let out = cast_with_options(&input, &target, &options).map_err(|e| (0, e.to_string()))?;
    if out.null_count() > array.null_count() {
        let row = (0..array.len()).find(|&i| array.is_valid(i) && out.is_null(i)).unwrap_or(0);
        let shown = arrow::util::display::array_value_to_string(array, row).unwrap_or_default();
        return Err((row, format!("'{}' ({source_type}) does not fit {}", shorten(&shown), ty.sql_name())));
    }
    Ok(out)
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if is_string(v))
}
