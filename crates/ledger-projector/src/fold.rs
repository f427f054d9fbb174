//! The pure part of the engine: batches of decoded events, the keys a batch touches, and the
//! fold of a batch into the rows it changes ([`fold`]); plus [`Tables`], a read model's tables
//! held in memory, which the memory backend and the tests use.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use foldhash::{HashMap, HashMapExt, HashSet};
use ledger_core::Position;

use crate::model::ReadModel;
use crate::spec::{Schema, TableSpec};
use crate::value::{Key, Row, RowError, Value};

/// Consecutive events of the log, applied in one transaction: every event read counts and
/// moves the checkpoint; the decoded ones are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<E> {
    events: Vec<(Position, E)>,
    count: u64,
    last: Option<Position>,
}

impl<E> Default for Batch<E> {
    fn default() -> Self {
        Self {
            events: Vec::new(),
            count: 0,
            last: None,
        }
    }
}

impl<E> Batch<E> {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next event of the log (`None`: read but not for any read model).
    pub fn push(&mut self, position: Position, event: Option<E>) {
        self.count += 1;
        self.last = Some(position);
        if let Some(e) = event {
            self.events.push((position, e));
        }
    }

    /// How many events of the log the batch covers.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether it covers none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The position of its last event: the checkpoint once it is applied.
    pub fn last(&self) -> Option<Position> {
        self.last
    }

    /// The decoded events, in log order.
    pub fn events(&self) -> &[(Position, E)] {
        &self.events
    }
}

impl<E> FromIterator<(Position, Option<E>)> for Batch<E> {
    fn from_iter<I: IntoIterator<Item = (Position, Option<E>)>>(iter: I) -> Self {
        let mut batch = Batch::new();
        for (p, e) in iter {
            batch.push(p, e);
        }
        batch
    }
}

/// The keys a read model declares for an event, per table.
#[derive(Debug)]
pub struct Keys {
    tables: Vec<Vec<Key>>,
}

impl Keys {
    fn new(tables: usize) -> Self {
        Self {
            tables: vec![Vec::new(); tables],
        }
    }

    /// Declares that the event may read or change the row of `key` in table `table` (the
    /// index of the table in the read model's schema).
    pub fn add(&mut self, table: usize, key: Key) {
        if let Some(t) = self.tables.get_mut(table) {
            t.push(key);
        }
    }
}

/// The keys of a batch, per table: which rows must be loaded, and which are known to be new.
#[derive(Debug)]
pub struct Plan {
    tables: Vec<PlanTable>,
}

#[derive(Debug, Default)]
struct PlanTable {
    /// Every declared key, once, with whether it is known to have no row yet.
    keys: HashMap<Key, bool>,
}

/// Remembers, through a replay into empty tables, which keys were already written, so that the
/// others need no loading and can be inserted plainly. (A hash collision only costs a load.)
#[derive(Debug, Default)]
pub struct Seen(HashSet<u64>);

impl Seen {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn first_time(&mut self, table: usize, key: &Key) -> bool {
        // A fixed seed: the hashes must agree across the batches of one pass.
        self.0.insert(FixedState::default().hash_one((table, key)))
    }
}

impl Plan {
    /// The keys `model` declares for `batch`; with `seen` (a replay into empty tables), keys
    /// not seen in earlier batches are marked new.
    pub fn of<E>(model: &dyn ReadModel<E>, batch: &Batch<E>, mut seen: Option<&mut Seen>) -> Plan {
        let schema = model.schema();
        let mut tables: Vec<PlanTable> =
            schema.tables.iter().map(|_| PlanTable::default()).collect();
        let mut keys = Keys::new(schema.tables.len());
        for (_, event) in batch.events() {
            model.keys(event, &mut keys);
            for (i, declared) in keys.tables.iter_mut().enumerate() {
                for key in declared.drain(..) {
                    if tables[i].keys.contains_key(&key) {
                        continue;
                    }
                    let new = seen.as_deref_mut().is_some_and(|s| s.first_time(i, &key));
                    tables[i].keys.insert(key, new);
                }
            }
        }
        Plan { tables }
    }

    /// The keys whose rows must be loaded from table `table`, sorted.
    pub fn to_load(&self, table: usize) -> Vec<Key> {
        let mut keys: Vec<Key> = self.tables[table]
            .keys
            .iter()
            .filter(|(_, new)| !**new)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        keys
    }
}

/// The rows a batch's events read and change, by table and key (the working set of a fold).
pub struct Rows {
    tables: Vec<Working>,
}

struct Working {
    spec: &'static TableSpec,
    index: HashMap<Key, usize>,
    slots: Vec<Held>,
}

struct Held {
    row: Option<Row>,
    existed: bool,
    new: bool,
    touched: bool,
}

impl Rows {
    fn working(&mut self, table: usize, key: &[Value]) -> Result<&mut Held, RowError> {
        let w = self.tables.get_mut(table).ok_or(RowError::Undeclared {
            table: "?",
            key: key.to_vec(),
        })?;
        match w.index.get(key) {
            Some(&i) => Ok(&mut w.slots[i]),
            None => Err(RowError::Undeclared {
                table: w.spec.name,
                key: key.to_vec(),
            }),
        }
    }

    /// The current row of `key` in table `table` (`None`: no such row).
    pub fn get(&mut self, table: usize, key: &[Value]) -> Result<Option<&Row>, RowError> {
        Ok(self.working(table, key)?.row.as_ref())
    }

    /// Changes the row of `key` in table `table`: `f` gets the row (`None`: there is none)
    /// and may replace, create or remove it.
    pub fn update<T>(
        &mut self,
        table: usize,
        key: &[Value],
        f: impl FnOnce(&mut Option<Row>) -> T,
    ) -> Result<T, RowError> {
        let held = self.working(table, key)?;
        held.touched = true;
        Ok(f(&mut held.row))
    }
}

/// What a fold writes to one table: rows to insert (new keys), rows to insert or replace, and
/// keys to delete, each in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableWrite {
    /// The table.
    pub table: &'static TableSpec,
    /// Rows of keys known to have no row yet.
    pub inserts: Vec<Row>,
    /// Rows that may replace existing ones.
    pub upserts: Vec<Row>,
    /// Keys whose rows are removed.
    pub deletes: Vec<Key>,
}

impl TableWrite {
    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty() && self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// Folds `batch` into `model`'s rows: `loaded` holds, per table, the current rows of the keys
/// [`Plan::to_load`] named (a missing row does not exist); returns what to write, per table.
pub fn fold<E>(
    model: &dyn ReadModel<E>,
    plan: Plan,
    loaded: Vec<Vec<Row>>,
    batch: &Batch<E>,
) -> Result<Vec<TableWrite>, RowError> {
    let schema = model.schema();
    let mut rows = Rows {
        tables: Vec::with_capacity(schema.tables.len()),
    };
    let mut loaded = loaded.into_iter();
    for (spec, planned) in schema.tables.iter().zip(plan.tables) {
        let mut index = HashMap::with_capacity(planned.keys.len());
        let mut slots = Vec::with_capacity(planned.keys.len());
        for (key, new) in planned.keys {
            index.insert(key, slots.len());
            slots.push(Held {
                row: None,
                existed: false,
                new,
                touched: false,
            });
        }
        for row in loaded.next().unwrap_or_default() {
            spec.check(&row)?;
            if let Some(&i) = index.get(&row[..spec.key]) {
                slots[i].row = Some(row);
                slots[i].existed = true;
            }
        }
        rows.tables.push(Working { spec, index, slots });
    }
    for (_, event) in batch.events() {
        model.apply(event, &mut rows)?;
    }
    let mut writes = Vec::with_capacity(rows.tables.len());
    for w in rows.tables {
        let mut order: Vec<(Key, usize)> = w.index.into_iter().collect();
        order.sort_unstable();
        let mut write = TableWrite {
            table: w.spec,
            inserts: Vec::new(),
            upserts: Vec::new(),
            deletes: Vec::new(),
        };
        let mut slots = w.slots;
        for (key, i) in order {
            let held = &mut slots[i];
            if !held.touched {
                continue;
            }
            match held.row.take() {
                Some(row) => {
                    w.spec.check(&row)?;
                    if w.spec.key_of(&row) != key {
                        return Err(RowError::Undeclared {
                            table: w.spec.name,
                            key: w.spec.key_of(&row),
                        });
                    }
                    if held.new {
                        write.inserts.push(row)
                    } else {
                        write.upserts.push(row)
                    }
                }
                None if held.existed => write.deletes.push(key),
                None => {}
            }
        }
        writes.push(write);
    }
    Ok(writes)
}

/// A read model's tables held in memory: rows by key, batches applied with [`fold`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    tables: BTreeMap<&'static str, BTreeMap<Key, Row>>,
}

impl Tables {
    /// Empty tables of `schema`.
    pub fn new(schema: &Schema) -> Self {
        Self {
            tables: schema
                .tables
                .iter()
                .map(|t| (t.name, BTreeMap::new()))
                .collect(),
        }
    }

    /// The rows of `keys` in `table` (those that exist), in key order.
    pub fn load(&self, table: &TableSpec, keys: &[Key]) -> Vec<Row> {
        let Some(rows) = self.tables.get(table.name) else {
            return Vec::new();
        };
        keys.iter().filter_map(|k| rows.get(k).cloned()).collect()
    }

    /// Writes what a fold produced.
    pub fn write(&mut self, writes: Vec<TableWrite>) {
        for w in writes {
            let rows = self.tables.entry(w.table.name).or_default();
            for row in w.inserts.into_iter().chain(w.upserts) {
                rows.insert(w.table.key_of(&row), row);
            }
            for key in w.deletes {
                rows.remove(&key);
            }
        }
    }

    /// Applies a batch: plans, loads, folds, writes.
    pub fn apply<E>(&mut self, model: &dyn ReadModel<E>, batch: &Batch<E>) -> Result<(), RowError> {
        let plan = Plan::of(model, batch, None);
        let loaded = model
            .schema()
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| self.load(t, &plan.to_load(i)))
            .collect();
        let writes = fold(model, plan, loaded, batch)?;
        self.write(writes);
        Ok(())
    }

    /// Every row of `table` in key order.
    pub fn rows(&self, table: &TableSpec) -> Vec<Row> {
        self.tables
            .get(table.name)
            .map(|rows| rows.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The rows of `table` after `after` in key order, at most `limit`, that `keep` accepts.
    pub fn page(
        &self,
        table: &TableSpec,
        after: Option<&Key>,
        limit: usize,
        keep: impl Fn(&Row) -> bool,
    ) -> Vec<Row> {
        use std::ops::Bound;
        let Some(rows) = self.tables.get(table.name) else {
            return Vec::new();
        };
        let lower = match after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Unbounded,
        };
        rows.range((lower, Bound::Unbounded))
            .map(|(_, r)| r)
            .filter(|r| keep(r))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The rows `query` selects of its table, in its order (what a backend without SQL
    /// answers).
    pub fn select(&self, query: &crate::store::Query) -> Vec<Row> {
        use std::ops::Bound;
        if !query.descending {
            return self.page(query.table, query.after.as_ref(), query.limit, |r| {
                query.passes(r)
            });
        }
        let Some(rows) = self.tables.get(query.table.name) else {
            return Vec::new();
        };
        let upper = match &query.after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Unbounded,
        };
        rows.range((Bound::Unbounded, upper))
            .rev()
            .map(|(_, r)| r)
            .filter(|r| query.passes(r))
            .take(query.limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Column;

    /// A read model counting events per word and remembering the last word: "drop <w>"
    /// deletes the word's row.
    struct Words;

    static COUNTS: TableSpec = TableSpec {
        name: "word_counts",
        columns: &[Column::text("word"), Column::int("n")],
        key: 1,
        indexes: &[],
    };
    static LAST: TableSpec = TableSpec {
        name: "last_word",
        columns: &[Column::int("id"), Column::text("word")],
        key: 1,
        indexes: &[],
    };
    static SCHEMA: Schema = Schema {
        name: "words",
        version: 1,
        tables: &[COUNTS, LAST],
    };

    impl ReadModel<String> for Words {
        fn schema(&self) -> &'static Schema {
            &SCHEMA
        }
        fn categories(&self) -> &'static [&'static str] {
            &["word"]
        }
        fn keys(&self, event: &String, keys: &mut Keys) {
            let word = event.strip_prefix("drop ").unwrap_or(event);
            keys.add(0, vec![Value::text(word)]);
            keys.add(1, vec![Value::Int(0)]);
        }
        fn apply(&self, event: &String, rows: &mut Rows) -> Result<(), RowError> {
            if let Some(word) = event.strip_prefix("drop ") {
                rows.update(0, &[Value::text(word)], |r| *r = None)?;
                return Ok(());
            }
            rows.update(0, &[Value::text(event.as_str())], |r| {
                let n = match r.as_ref().map(|r| &r[1]) {
                    Some(Value::Int(n)) => *n,
                    _ => 0,
                };
                *r = Some(vec![Value::text(event.as_str()), Value::Int(n + 1)]);
            })?;
            rows.update(1, &[Value::Int(0)], |r| {
                *r = Some(vec![Value::Int(0), Value::text(event.as_str())])
            })
        }
    }

    fn batch(words: &[&str]) -> Batch<String> {
        words
            .iter()
            .enumerate()
            .map(|(i, w)| (Position(i as u64 + 1), Some(w.to_string())))
            .collect()
    }

    #[test]
    fn batches_fold_into_inserts_upserts_and_deletes() {
        let mut tables = Tables::new(&SCHEMA);
        tables.apply(&Words, &batch(&["b", "a", "b"])).unwrap();
        assert_eq!(
            tables.rows(&COUNTS),
            [
                vec![Value::text("a"), Value::Int(1)],
                vec![Value::text("b"), Value::Int(2)]
            ]
        );
        assert_eq!(tables.rows(&LAST), [vec![Value::Int(0), Value::text("b")]]);
        let b = batch(&["drop a", "c", "drop zz"]);
        let plan = Plan::of(&Words, &b, None);
        assert_eq!(plan.to_load(0).len(), 3);
        let loaded = vec![
            tables.load(&COUNTS, &plan.to_load(0)),
            tables.load(&LAST, &plan.to_load(1)),
        ];
        let writes = fold(&Words, plan, loaded, &b).unwrap();
        assert_eq!(writes[0].deletes, [vec![Value::text("a")]]);
        assert_eq!(writes[0].upserts, [vec![Value::text("c"), Value::Int(1)]]);
        assert!(writes[0].inserts.is_empty());
        tables.write(writes);
        assert_eq!(tables.rows(&COUNTS).len(), 2);
        let page = tables.page(&COUNTS, Some(&vec![Value::text("b")]), 10, |_| true);
        assert_eq!(page, [vec![Value::text("c"), Value::Int(1)]]);
    }

    #[test]
    fn a_replay_marks_keys_never_seen_as_new() {
        let mut seen = Seen::new();
        let first = batch(&["a", "b"]);
        let plan = Plan::of(&Words, &first, Some(&mut seen));
        assert!(plan.to_load(0).is_empty() && plan.to_load(1).is_empty());
        let writes = fold(&Words, plan, vec![vec![], vec![]], &first).unwrap();
        assert_eq!(writes[0].inserts.len(), 2);
        let second = batch(&["a", "c"]);
        let plan = Plan::of(&Words, &second, Some(&mut seen));
        assert_eq!(plan.to_load(0), [vec![Value::text("a")]]);
        assert_eq!(plan.to_load(1), [vec![Value::Int(0)]]);
    }

    struct Sloppy;

    impl ReadModel<String> for Sloppy {
        fn schema(&self) -> &'static Schema {
            &SCHEMA
        }
        fn categories(&self) -> &'static [&'static str] {
            &[]
        }
        fn keys(&self, _: &String, _: &mut Keys) {}
        fn apply(&self, event: &String, rows: &mut Rows) -> Result<(), RowError> {
            rows.update(0, &[Value::text(event.as_str())], |r| {
                *r = Some(vec![Value::text(event.as_str())])
            })
        }
    }

    #[test]
    fn undeclared_keys_and_bad_rows_are_errors() {
        let b = batch(&["a"]);
        let plan = Plan::of(&Sloppy, &b, None);
        assert!(matches!(
            fold(&Sloppy, plan, vec![vec![], vec![]], &b),
            Err(RowError::Undeclared { .. })
        ));
        struct Narrow;
        impl ReadModel<String> for Narrow {
            fn schema(&self) -> &'static Schema {
                &SCHEMA
            }
            fn categories(&self) -> &'static [&'static str] {
                &[]
            }
            fn keys(&self, e: &String, keys: &mut Keys) {
                keys.add(0, vec![Value::text(e.as_str())]);
            }
            fn apply(&self, event: &String, rows: &mut Rows) -> Result<(), RowError> {
                Sloppy.apply(event, rows)
            }
        }
        let plan = Plan::of(&Narrow, &b, None);
        assert!(matches!(
            fold(&Narrow, plan, vec![vec![], vec![]], &b),
            Err(RowError::Width { .. })
        ));
    }
}
