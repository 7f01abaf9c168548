//! Persons as the unit of an audience (`CREATE AUDIENCE name BY PERSON`, docs/identity.md): the
//! version's user row → person map read from its resolution, and the set operations that lift a
//! set of profiles to persons — every profile of each person touched, the number of persons, and
//! each person's anchor (its first loaded profile), whose user_id draws the person's holdout.
//!
//! ```text
//! query's profiles ─ expand ─┐
//! suppressed profiles ─ expand ─ minus ─ members (every profile of each member person)
//! anchors of the members ─ hash(audience, anchor user_id) ─ expand ─ holdout
//! ```
//!
//! A user row the resolution does not list (none was made yet, or the row came later) is a person
//! of its own, and so is a user without any identifier (the resolution lists it alone).

use std::fs::File;

use arrow::array::Int64Array;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use roaring::RoaringBitmap;

use crate::error::{Error, IoContext, Result};
use crate::store::{Snapshot, layout};

/// A row the resolution gives no person.
const ALONE: u32 = u32::MAX;

/// Each user row's person, and each person's rows.
#[derive(Debug, Default)]
pub struct PersonMap {
    /// Per user row: its person's index (dense, in order of first appearance), or [`ALONE`].
    person: Vec<u32>,
    /// The rows of person `p` are `rows[start[p]..start[p + 1]]`, ascending: the first is the
    /// person's anchor.
    start: Vec<u32>,
    rows: Vec<u32>,
}

impl PersonMap {
    /// The persons of a snapshot: from its resolution's persons file, or every user alone when
    /// the store has none.
    pub fn of(snapshot: &Snapshot) -> Result<PersonMap> {
        let Some(resolution) = &snapshot.manifest().identity.resolution else {
            return Ok(PersonMap::default());
        };
        let path = layout::resolve(snapshot.root(), &resolution.persons);
        let file = File::open(&path).io_context("open", &path)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
        let schema = builder.schema().clone();
        let corrupt = || Error::corrupt(&path, "an identity persons file lacks person_id or profile_seq");
        let columns = [
            schema.index_of("person_id").map_err(|_| corrupt())?,
            schema.index_of("profile_seq").map_err(|_| corrupt())?,
        ];
        let mask = ProjectionMask::roots(builder.parquet_schema(), columns);
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for batch in builder.with_projection(mask).with_batch_size(65_536).build()? {
            let batch = batch?;
            let column = |name: &str| {
                let array = batch.column_by_name(name).ok_or_else(corrupt)?;
                crate::store::typed::column::<Int64Array>(&path, name, array.as_ref())
            };
            let (persons, rows) = (column("person_id")?, column("profile_seq")?);
            for i in 0..batch.num_rows() {
                let (p, r) = (persons.value(i), rows.value(i));
                let (Ok(p), Ok(r)) = (u32::try_from(p), u32::try_from(r)) else {
                    return Err(Error::corrupt(&path, format!("person {p} of row {r} is out of range")));
                };
                pairs.push((r, p));
            }
        }
        Ok(PersonMap::from_pairs(pairs))
    }

    /// The map of (row, person id) pairs; person ids need not be dense.
    pub fn from_pairs(pairs: Vec<(u32, u32)>) -> PersonMap {
        let rows_len = pairs.iter().map(|&(r, _)| r as usize + 1).max().unwrap_or(0);
        let mut person = vec![ALONE; rows_len];
        let mut dense: rustc_hash::FxHashMap<u32, u32> = rustc_hash::FxHashMap::default();
        for &(r, p) in &pairs {
            let next = dense.len() as u32;
            person[r as usize] = *dense.entry(p).or_insert(next);
        }
        // Counting sort of the rows by person; rows come out ascending within each person.
        let mut start = vec![0u32; dense.len() + 1];
        for &p in person.iter().filter(|&&p| p != ALONE) {
            start[p as usize + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        let mut fill = start.clone();
        let mut rows = vec![0u32; start.last().copied().unwrap_or(0) as usize];
        for (r, &p) in person.iter().enumerate() {
            if p != ALONE {
                rows[fill[p as usize] as usize] = r as u32;
                fill[p as usize] += 1;
            }
        }
        PersonMap { person, start, rows }
    }

    fn person_of(&self, row: u32) -> u32 {
        self.person.get(row as usize).copied().unwrap_or(ALONE)
    }

    fn rows_of(&self, p: u32) -> &[u32] {
        &self.rows[self.start[p as usize] as usize..self.start[p as usize + 1] as usize]
    }

    /// Calls `f` with the rows of every person one of `set` belongs to, once per person.
    fn for_each_person(&self, set: &RoaringBitmap, mut f: impl FnMut(&[u32])) {
        let mut seen = RoaringBitmap::new();
        for row in set {
            match self.person_of(row) {
                ALONE => f(&[row]),
                p => {
                    if seen.insert(p) {
                        f(self.rows_of(p));
                    }
                }
            }
        }
    }

    /// Every profile of the persons `set` touches.
    pub fn expand(&self, set: &RoaringBitmap) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        self.for_each_person(set, |rows| {
            out.extend(rows.iter().copied());
        });
        out
    }

    /// How many persons `set` touches.
    pub fn count(&self, set: &RoaringBitmap) -> u64 {
        let mut n = 0;
        self.for_each_person(set, |_| n += 1);
        n
    }

    /// The anchor (first profile) of each person `set` touches.
    pub fn anchors(&self, set: &RoaringBitmap) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        self.for_each_person(set, |rows| {
            out.insert(rows[0]);
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rows: &[u32]) -> RoaringBitmap {
        rows.iter().copied().collect()
    }

    #[test]
    fn sets_lift_to_every_profile_of_their_persons() {
        // Persons: {0, 3, 5}, {1}, {2, 4}; row 6 is not in the resolution (alone).
        let map = PersonMap::from_pairs(vec![(0, 7), (1, 9), (2, 8), (3, 7), (4, 8), (5, 7)]);
        assert_eq!(map.expand(&set(&[3])), set(&[0, 3, 5]));
        assert_eq!(map.expand(&set(&[4, 5, 6])), set(&[0, 2, 3, 4, 5, 6]));
        assert_eq!(map.count(&set(&[0, 3, 5, 2, 6])), 3);
        assert_eq!(map.anchors(&set(&[5, 4, 1, 6])), set(&[0, 1, 2, 6]));
        // No resolution: every user alone.
        let none = PersonMap::default();
        assert_eq!(none.expand(&set(&[1, 2])), set(&[1, 2]));
        assert_eq!(none.count(&set(&[1, 2])), 2);
    }
}
