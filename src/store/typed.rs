//! Typed access to arrays read back from store files: a column of another type than Persona
//! wrote (a damaged, rewritten or foreign file) is a corrupt error naming the file, never a
//! panic. Arrays whose type a schema already fixed (a planned expression, a cast, a batch built
//! against the file schema) need no check.

use std::path::Path;

use arrow::array::Array;

use crate::error::{Error, Result};

/// `array`, column `name` of the store file at `path`, as the array type `T`.
pub fn column<'a, T: Array + 'static>(path: &Path, name: &str, array: &'a dyn Array) -> Result<&'a T> {
    array.as_any().downcast_ref::<T>().ok_or_else(|| {
        Error::corrupt(path, format!("column {name} holds {}, a type Persona does not write there", array.data_type()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn a_column_of_another_type_is_corrupt_naming_the_file() {
        let ints = Int64Array::from(vec![1, 2]);
        assert_eq!(column::<Int64Array>(Path::new("f.parquet"), "n", &ints).unwrap().value(1), 2);
        let err = column::<StringArray>(Path::new("f.parquet"), "tag", &ints).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { path, .. } if path == Path::new("f.parquet")), "{err}");
        assert!(err.to_string().contains("column tag holds Int64"), "{err}");
    }
}
