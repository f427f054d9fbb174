//! What a read model implements, and the catalog of read models a projector runs.

use std::sync::Arc;

use ledger_core::{LogFilter, RawEvent};

use crate::fold::{Keys, Rows};
use crate::spec::{Schema, SpecError};
use crate::value::RowError;

/// Turns events of the log into the events read models apply (`E`), once per event for every
/// read model of a catalog.
pub trait Decode<E>: Send + Sync {
    /// The event, or `None` for one no read model reads (it only moves the checkpoints). Must
    /// be pure: replaying the log always decodes the same events.
    fn decode(&self, raw: RawEvent) -> Option<E>;
}

/// A read model: a pure function from events to rows of its tables.
///
/// The engine reads the log from the read model's checkpoint, asks [`keys`](Self::keys) which
/// rows each event of a batch touches, loads those rows, lets [`apply`](Self::apply) change
/// them event by event, and writes the changed rows with the new checkpoint in one
/// transaction. `apply` must use only the event and the rows (never the clock), so replaying
/// the log always gives the same rows.
pub trait ReadModel<E>: Send + Sync {
    /// Its name, version and tables.
    fn schema(&self) -> &'static Schema;

    /// The stream categories whose events it reads (none: every event of the log).
    fn categories(&self) -> &'static [&'static str];

    /// Declares the keys of every row `event` may read or change, per table.
    fn keys(&self, event: &E, keys: &mut Keys);

    /// Applies `event` to the rows it declared.
    fn apply(&self, event: &E, rows: &mut Rows) -> Result<(), RowError>;
}

/// The read models a projector runs, and the decoder they share.
pub struct Catalog<E> {
    decoder: Arc<dyn Decode<E>>,
    models: Vec<Arc<dyn ReadModel<E>>>,
}

impl<E> Clone for Catalog<E> {
    fn clone(&self) -> Self {
        Self {
            decoder: self.decoder.clone(),
            models: self.models.clone(),
        }
    }
}

impl<E> Catalog<E> {
    /// A catalog of `models`, whose events `decoder` decodes. Fails when a spec is malformed
    /// or two read models (or two of their tables) share a name.
    pub fn new(
        decoder: Arc<dyn Decode<E>>,
        models: Vec<Arc<dyn ReadModel<E>>>,
    ) -> Result<Self, SpecError> {
        for (i, m) in models.iter().enumerate() {
            let schema = m.schema();
            schema.validate()?;
            for other in &models[..i] {
                let other = other.schema();
                if other.name == schema.name {
                    return Err(SpecError(format!(
                        "two read models are named {}",
                        schema.name
                    )));
                }
                for t in schema.tables {
                    if other.tables.iter().any(|u| u.name == t.name) {
                        return Err(SpecError(format!(
                            "two read models have a table {}",
                            t.name
                        )));
                    }
                }
            }
        }
        Ok(Self { decoder, models })
    }

    /// The decoder.
    pub fn decoder(&self) -> &Arc<dyn Decode<E>> {
        &self.decoder
    }

    /// Every read model, in the order runners and rebuilds take them.
    pub fn models(&self) -> &[Arc<dyn ReadModel<E>>] {
        &self.models
    }

    /// The names of every read model, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.models.iter().map(|m| m.schema().name).collect()
    }

    /// The read model called `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn ReadModel<E>>, UnknownReadModel> {
        self.models
            .iter()
            .find(|m| m.schema().name == name)
            .ok_or_else(|| UnknownReadModel {
                name: name.to_string(),
                known: self.names().join(", "),
            })
    }

    /// The events the read models called `names` read (all of them when one of those reads
    /// every category).
    pub fn filter(&self, names: &[&str]) -> LogFilter {
        let models = || {
            self.models
                .iter()
                .filter(|m| names.contains(&m.schema().name))
        };
        if models().any(|m| m.categories().is_empty()) {
            return LogFilter::all();
        }
        LogFilter::categories(models().flat_map(|m| m.categories().iter().copied()))
    }
}

/// A name that is no read model of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("there is no read model {name:?}; the read models are {known}")]
pub struct UnknownReadModel {
    /// The name asked for.
    pub name: String,
    /// The read models there are, comma-separated.
    pub known: String,
}
