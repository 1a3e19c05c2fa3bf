//! The engine's hook into the journal, so that the command path reads the
//! same with and without the `journal` feature. With it, these are the
//! journal's writer types; without it, uninhabited types: the engine's
//! `Option<Journal>` is always `None` and the hook compiles to nothing.

#[cfg(feature = "journal")]
pub(crate) use crate::journal::Journal;

#[cfg(not(feature = "journal"))]
pub(crate) use off::Journal;

#[cfg(not(feature = "journal"))]
mod off {
    use crate::command::Op;
    use crate::engine::Engine;
    use crate::error::Error;
    use crate::id::GraphKey;
    use crate::time::Timestamp;

    /// No journal can exist without the feature.
    pub(crate) enum Journal {}

    /// Nor a command on its way into one.
    pub(crate) enum Prepared {}

    impl Journal {
        pub(crate) fn prepare(
            &self,
            _: &GraphKey,
            _: Timestamp,
            _: &Op,
        ) -> Result<Prepared, Error> {
            match *self {}
        }
    }

    impl Prepared {
        pub(crate) fn append(&mut self) {
            match *self {}
        }

        pub(crate) fn finish(self, _: &Engine) -> Result<(), Error> {
            match self {}
        }
    }
}
