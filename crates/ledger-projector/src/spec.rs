//! What a read model declares once: its name, version and tables (columns with types, key,
//! indexes). The backends create, write and query tables from these specs alone.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// UTF-8 text, ordered by bytes.
    Text,
    /// A 64-bit signed integer.
    Int,
    /// A UTC time with microsecond precision.
    Time,
}

/// One column of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Column {
    /// Its name: lowercase ASCII letters, digits and `_`.
    pub name: &'static str,
    /// Its type.
    pub ty: ColumnType,
    /// Whether it may hold no value.
    pub nullable: bool,
}

impl Column {
    /// A text column that always has a value.
    pub const fn text(name: &'static str) -> Self {
        Self {
            name,
            ty: ColumnType::Text,
            nullable: false,
        }
    }

    /// An integer column that always has a value.
    pub const fn int(name: &'static str) -> Self {
        Self {
            name,
            ty: ColumnType::Int,
            nullable: false,
        }
    }

    /// A time column that always has a value.
    pub const fn time(name: &'static str) -> Self {
        Self {
            name,
            ty: ColumnType::Time,
            nullable: false,
        }
    }

    /// The same column, allowed to hold no value.
    pub const fn nullable(self) -> Self {
        Self {
            nullable: true,
            ..self
        }
    }
}

/// A secondary index, built when a copy goes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Index {
    /// Its name within the table: the index is called `<table>_<name>_idx`.
    pub name: &'static str,
    /// The indexed columns, in order.
    pub columns: &'static [&'static str],
    /// A partial index: only rows where this column holds no value.
    pub only_null: Option<&'static str>,
}

impl Index {
    /// The index's name on table `table`.
    pub fn name_on(&self, table: &str) -> String {
        format!("{table}_{}_idx", self.name)
    }
}

/// One table of a read model: its columns, whose first `key` columns are the primary key
/// (rows are kept and paged in key order), and its secondary indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableSpec {
    /// The live table's name (a rebuild fills `<name>_rebuild`).
    pub name: &'static str,
    /// Every column, in order; a row holds one value per column in this order.
    pub columns: &'static [Column],
    /// How many leading columns form the primary key (at least one; text or integer, never
    /// empty).
    pub key: usize,
    /// Secondary indexes.
    pub indexes: &'static [Index],
}

/// Which copy of a read model: the live tables queries read, or the fresh copy a rebuild fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// The tables queries read.
    Live,
    /// The shadow tables a rebuild fills before they are swapped in.
    Rebuild,
}

impl Slot {
    /// The slot's name in the checkpoint table.
    pub fn name(self) -> &'static str {
        match self {
            Slot::Live => "live",
            Slot::Rebuild => "rebuild",
        }
    }

    /// The slot named `name` in the checkpoint table.
    pub fn parse(name: &str) -> Option<Slot> {
        match name {
            "live" => Some(Slot::Live),
            "rebuild" => Some(Slot::Rebuild),
            _ => None,
        }
    }
}

impl TableSpec {
    /// The name of the table that holds `slot`'s copy.
    pub fn table(&self, slot: Slot) -> String {
        match slot {
            Slot::Live => self.name.to_string(),
            Slot::Rebuild => format!("{}_rebuild", self.name),
        }
    }

    /// The key columns.
    pub fn key_columns(&self) -> &'static [Column] {
        &self.columns[..self.key.min(self.columns.len())]
    }

    /// The index of the column called `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Checks that the spec is well formed: names are identifiers, unique, the key is one or
    /// more non-null text or integer columns, and index columns exist.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |what: String| Err(SpecError(format!("table {}: {what}", self.name)));
        if !is_identifier(self.name) || self.name.len() > 40 {
            return bad("the name must be a lowercase identifier of at most 40 bytes".into());
        }
        if self.key == 0 || self.key > self.columns.len() {
            return bad(format!("a key of {} columns is impossible", self.key));
        }
        for (i, c) in self.columns.iter().enumerate() {
            if !is_identifier(c.name) {
                return bad(format!("column {:?} is not a lowercase identifier", c.name));
            }
            if self.columns[..i].iter().any(|d| d.name == c.name) {
                return bad(format!("column {} is declared twice", c.name));
            }
        }
        for c in self.key_columns() {
            if c.nullable || c.ty == ColumnType::Time {
                return bad(format!(
                    "key column {} must be non-null text or integer",
                    c.name
                ));
            }
        }
        for (i, index) in self.indexes.iter().enumerate() {
            if !is_identifier(index.name) || self.indexes[..i].iter().any(|j| j.name == index.name)
            {
                return bad(format!("index {:?} is badly or twice named", index.name));
            }
            let named = index.columns.iter().chain(index.only_null.iter());
            if index.columns.is_empty() {
                return bad(format!("index {} has no column", index.name));
            }
            for c in named {
                if self.column(c).is_none() {
                    return bad(format!("index {} names no column {c}", index.name));
                }
            }
        }
        Ok(())
    }
}

/// Whether `s` is a lowercase SQL identifier: `[a-z_][a-z0-9_]*`.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// A read model's name, version and tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Schema {
    /// The read model's name: its checkpoints, lease, routes and CLI arguments use it.
    pub name: &'static str,
    /// Its version: bumping it makes the runner rebuild the read model on start.
    pub version: u32,
    /// Its tables (at least one; the first is the one named after the read model, by
    /// convention).
    pub tables: &'static [TableSpec],
}

impl Schema {
    /// Checks every table and that no two share a name.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.tables.is_empty() {
            return Err(SpecError(format!("read model {} has no table", self.name)));
        }
        for (i, t) in self.tables.iter().enumerate() {
            t.validate()?;
            if self.tables[..i].iter().any(|u| u.name == t.name) {
                return Err(SpecError(format!("table {} is declared twice", t.name)));
            }
        }
        Ok(())
    }
}

/// A malformed table spec (a programming error of the read model that declares it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a read model's spec is malformed: {0}")]
pub struct SpecError(pub String);

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[Column] = &[
        Column::text("id"),
        Column::int("n"),
        Column::time("at").nullable(),
    ];

    fn spec(key: usize, indexes: &'static [Index]) -> TableSpec {
        TableSpec {
            name: "things",
            columns: COLUMNS,
            key,
            indexes,
        }
    }

    #[test]
    fn well_formed_specs_pass_and_others_say_why() {
        const BY_N: &[Index] = &[Index {
            name: "n",
            columns: &["n", "id"],
            only_null: Some("at"),
        }];
        assert_eq!(spec(2, BY_N).validate(), Ok(()));
        assert_eq!(spec(2, BY_N).table(Slot::Rebuild), "things_rebuild");
        assert_eq!(BY_N[0].name_on("things"), "things_n_idx");
        assert_eq!(spec(1, &[]).key_columns().len(), 1);
        for bad in [spec(0, &[]), spec(3, &[]), spec(4, &[])] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        const MISSING: &[Index] = &[Index {
            name: "x",
            columns: &["nope"],
            only_null: None,
        }];
        assert!(spec(1, MISSING).validate().is_err());
        const TWICE: &[Column] = &[Column::text("a"), Column::int("a")];
        let twice = TableSpec {
            columns: TWICE,
            ..spec(1, &[])
        };
        assert!(twice.validate().is_err());
        let upper = TableSpec {
            name: "Things",
            ..spec(1, &[])
        };
        assert!(upper.validate().is_err());
        let schema = Schema {
            name: "things",
            version: 1,
            tables: &[],
        };
        assert!(schema.validate().is_err());
    }

    #[test]
    fn slots_round_trip() {
        for slot in [Slot::Live, Slot::Rebuild] {
            assert_eq!(Slot::parse(slot.name()), Some(slot));
        }
        assert_eq!(Slot::parse("x"), None);
    }
}
