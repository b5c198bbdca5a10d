//! A client's filter: which event types it receives, as set by control
//! frames, within limits a hostile client cannot get around.

use std::collections::HashSet;

use crate::config::HubConfig;

/// The bounds on one client's filter, from [`HubConfig`].
///
/// They are enforced twice: while a control frame is parsed (no type
/// longer than `max_type_len`, no list longer than `max_types` or
/// `max_bytes`, so an oversized frame stops the parser early), and when a
/// change is applied (the filter *after* the change must fit, checked
/// before anything is allocated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FilterLimits {
    /// Longest event type, in bytes.
    pub(crate) max_type_len: usize,
    /// Most event types one filter may hold.
    pub(crate) max_types: usize,
    /// Most bytes of event types one filter may hold, summed.
    pub(crate) max_bytes: usize,
}

impl FilterLimits {
    pub(crate) fn from_config(config: &HubConfig) -> FilterLimits {
        FilterLimits {
            max_type_len: config.max_event_type_len,
            max_types: config.max_filter_types,
            max_bytes: config.max_filter_bytes,
        }
    }
}

/// Which limit a control frame broke; the filter is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverLimit {
    /// One event type is longer than `max_type_len`.
    TypeTooLong,
    /// The filter would hold more than `max_types` types.
    TooManyTypes,
    /// The filter's types would add up to more than `max_bytes`.
    TooManyBytes,
}

impl OverLimit {
    /// The config field that sets the limit, for logs and close reasons.
    pub(crate) fn field(self) -> &'static str {
        match self {
            OverLimit::TypeTooLong => "max_event_type_len",
            OverLimit::TooManyTypes => "max_filter_types",
            OverLimit::TooManyBytes => "max_filter_bytes",
        }
    }
}

/// A filter change, parsed from a control frame (see
/// [`control`](crate::relay::control)). Its list is sorted and has no repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Add these types (`[]`: every type); with `replace`, set them.
    Subscribe { types: Vec<Box<str>>, replace: bool },
    /// Remove these types (`[]`: every type, leaving nothing).
    Unsubscribe { types: Vec<Box<str>> },
}

/// A set of event types that knows how many bytes it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TypeSet {
    set: HashSet<Box<str>>,
    bytes: usize,
}

impl TypeSet {
    fn contains(&self, t: &str) -> bool {
        self.set.contains(t)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.set.len()
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    fn clear(&mut self) {
        self.set.clear();
        self.bytes = 0;
    }

    /// Adds `types` if the set then still fits `limits`; the check comes
    /// before any allocation.
    fn extend(&mut self, types: &[Box<str>], limits: &FilterLimits) -> Result<(), OverLimit> {
        let (added, bytes) = self.fits(types, limits)?;
        self.set.reserve(added);
        for t in types {
            if !self.set.contains(&**t) {
                self.set.insert(t.clone());
            }
        }
        self.bytes = bytes;
        Ok(())
    }

    /// How many types adding `types` would add, and the bytes the set
    /// would then hold, if that fits `limits`. Allocates nothing.
    fn fits(&self, types: &[Box<str>], limits: &FilterLimits) -> Result<(usize, usize), OverLimit> {
        let mut added = 0;
        let mut bytes = self.bytes;
        for t in types.iter().filter(|t| !self.set.contains(&***t)) {
            if t.len() > limits.max_type_len {
                return Err(OverLimit::TypeTooLong);
            }
            added += 1;
            bytes += t.len();
        }
        if self.set.len() + added > limits.max_types {
            return Err(OverLimit::TooManyTypes);
        }
        if bytes > limits.max_bytes {
            return Err(OverLimit::TooManyBytes);
        }
        Ok((added, bytes))
    }

    fn remove(&mut self, types: &[Box<str>]) {
        for t in types {
            if self.set.remove(&**t) {
                self.bytes -= t.len();
            }
        }
    }
}

/// Which event types a client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Every type except these. A client that never sent a control frame
    /// has `AllExcept(∅)`: it receives everything.
    AllExcept(TypeSet),
    /// Only these types; empty means nothing.
    Only(TypeSet),
}

/// What a filter can answer for a whole burst without looking at types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coverage {
    Everything,
    Nothing,
    Some,
}

impl Default for Filter {
    fn default() -> Self {
        Filter::AllExcept(TypeSet::default())
    }
}

/// A filter as `/api/clients` shows it: which kind, how many types, and
/// at most a few of them (sorted), so a row stays small whatever the
/// filter holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterSummary {
    /// `"all"`, `"all_except"`, `"only"` or `"none"`.
    pub(crate) mode: &'static str,
    /// Types in the filter.
    pub(crate) count: usize,
    /// The first few of them, sorted.
    pub(crate) sample: Vec<Box<str>>,
}

/// Filters of up to this many types show their smallest types in a
/// summary; larger ones show some of them (see [`Filter::summary`]).
const SUMMARY_SCAN: usize = 64;

impl Filter {
    /// The filter's kind and size, with at most `max_types` of its types,
    /// sorted: the smallest ones for a filter of up to 64 types, some of
    /// them for a larger one, so the cost is bounded whatever the filter.
    pub(crate) fn summary(&self, max_types: usize) -> FilterSummary {
        let (mode, set) = match self {
            Filter::AllExcept(except) if except.is_empty() => ("all", except),
            Filter::AllExcept(except) => ("all_except", except),
            Filter::Only(only) if only.is_empty() => ("none", only),
            Filter::Only(only) => ("only", only),
        };
        let mut sample: Vec<&str> = Vec::with_capacity(max_types.min(set.set.len()));
        if set.set.len() > SUMMARY_SCAN {
            // A large filter: some of its types, sorted, not the smallest
            // of all of them; `/api/clients` costs the same per client
            // whatever the filters hold (a scan of 1,000 maximal filters
            // took ~70 ms of a hub worker per request).
            sample.extend(set.set.iter().take(max_types).map(|t| &**t));
            sample.sort_unstable();
            return FilterSummary {
                mode,
                count: set.set.len(),
                sample: sample.into_iter().map(Box::from).collect(),
            };
        }
        for t in &set.set {
            // Keep the smallest `max_types`, without sorting the whole set.
            if sample.len() < max_types {
                sample.push(t);
                sample.sort_unstable();
            } else if sample.last().is_some_and(|last| **t < **last) {
                sample.pop();
                let at = sample.partition_point(|s| *s < &**t);
                sample.insert(at, t);
            }
        }
        FilterSummary {
            mode,
            count: set.set.len(),
            sample: sample.into_iter().map(Box::from).collect(),
        }
    }

    pub(crate) fn matches(&self, event_type: &str) -> bool {
        match self {
            Filter::AllExcept(except) => !except.contains(event_type),
            Filter::Only(only) => only.contains(event_type),
        }
    }

    pub(crate) fn coverage(&self) -> Coverage {
        match self {
            Filter::AllExcept(except) if except.is_empty() => Coverage::Everything,
            Filter::Only(only) if only.is_empty() => Coverage::Nothing,
            _ => Coverage::Some,
        }
    }

    /// Applies a change in place: `subscribe` adds types (`[]`:
    /// everything), with `replace` it sets them; `unsubscribe` removes
    /// types (`[]`: everything, leaving nothing). If the result would not
    /// fit `limits` the filter is unchanged and nothing was allocated.
    ///
    /// The result depends only on the filter before and the change, so
    /// applying one change to two equal filters leaves them equal.
    pub(crate) fn apply(
        &mut self,
        change: &Change,
        limits: &FilterLimits,
    ) -> Result<(), OverLimit> {
        match (change, &mut *self) {
            (Change::Subscribe { types, .. }, Filter::AllExcept(except)) if types.is_empty() => {
                except.clear();
            }
            (Change::Subscribe { types, .. }, Filter::Only(_)) if types.is_empty() => {
                *self = Filter::default();
            }
            (
                Change::Subscribe {
                    types,
                    replace: true,
                },
                _,
            ) => {
                // The list was checked against the limits while parsing;
                // checked again here so `apply` is sound on its own.
                TypeSet::default().fits(types, limits)?;
                let mut next = match std::mem::take(self) {
                    Filter::Only(mut set) | Filter::AllExcept(mut set) => {
                        set.clear();
                        set
                    }
                };
                let fits = next.extend(types, limits);
                *self = Filter::Only(next);
                fits?;
            }
            (Change::Subscribe { types, .. }, Filter::Only(only)) => only.extend(types, limits)?,
            (Change::Subscribe { types, .. }, Filter::AllExcept(except)) => except.remove(types),
            (Change::Unsubscribe { types }, Filter::Only(only)) if types.is_empty() => {
                only.clear();
            }
            (Change::Unsubscribe { types }, Filter::AllExcept(_)) if types.is_empty() => {
                *self = Filter::Only(TypeSet::default());
            }
            (Change::Unsubscribe { types }, Filter::Only(only)) => only.remove(types),
            (Change::Unsubscribe { types }, Filter::AllExcept(except)) => {
                except.extend(types, limits)?;
            }
        }
        Ok(())
    }

    /// Event types held.
    #[cfg(test)]
    fn len(&self) -> usize {
        match self {
            Filter::AllExcept(set) | Filter::Only(set) => set.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FilterLimits = FilterLimits {
        max_type_len: 256,
        max_types: 8,
        max_bytes: 64,
    };

    fn list(types: &[&str]) -> Vec<Box<str>> {
        let mut v: Vec<Box<str>> = types.iter().map(|t| Box::from(*t)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn sub(types: &[&str], replace: bool) -> Change {
        Change::Subscribe {
            types: list(types),
            replace,
        }
    }

    fn unsub(types: &[&str]) -> Change {
        Change::Unsubscribe { types: list(types) }
    }

    fn applied(changes: &[Change]) -> Filter {
        let mut f = Filter::default();
        for change in changes {
            f.apply(change, &LIMITS).unwrap();
        }
        f
    }

    #[test]
    fn a_summary_shows_the_mode_the_count_and_the_first_types_sorted() {
        let limits = FilterLimits {
            max_type_len: 256,
            max_types: 100,
            max_bytes: 10_000,
        };
        assert_eq!(Filter::default().summary(3).mode, "all");
        let mut only = Filter::default();
        let types = ["a", "b", "c", "d", "e"].map(Box::<str>::from).to_vec();
        only.apply(
            &Change::Subscribe {
                types,
                replace: true,
            },
            &limits,
        )
        .unwrap();
        let s = only.summary(3);
        assert_eq!((s.mode, s.count), ("only", 5));
        assert_eq!(s.sample, ["a", "b", "c"].map(Box::<str>::from).to_vec());
        let none = Filter::Only(TypeSet::default()).summary(3);
        assert_eq!((none.mode, none.count), ("none", 0));
    }

    #[test]
    fn a_new_client_receives_everything() {
        let f = Filter::default();
        assert_eq!(f.coverage(), Coverage::Everything);
        assert!(f.matches("anything"));
    }

    #[test]
    fn subscribe_replace_unsubscribe() {
        let f = applied(&[sub(&["a"], true), sub(&["b"], false)]);
        assert!(f.matches("a") && f.matches("b") && !f.matches("c"));

        let f = applied(&[sub(&["a", "b"], true), sub(&["c"], true)]);
        assert!(!f.matches("a") && f.matches("c"));

        let f = applied(&[sub(&["a", "b"], true), unsub(&["a"])]);
        assert!(!f.matches("a") && f.matches("b"));

        let f = applied(&[sub(&["a"], true), unsub(&[])]);
        assert_eq!(f.coverage(), Coverage::Nothing);
        assert!(!f.matches("a"));

        let f = applied(&[unsub(&[]), sub(&[], false)]);
        assert_eq!(f.coverage(), Coverage::Everything);

        let f = applied(&[unsub(&[]), sub(&["x"], false)]);
        assert!(f.matches("x") && !f.matches("y"));
    }

    #[test]
    fn unsubscribing_from_everything_keeps_the_rest() {
        let f = applied(&[unsub(&["noisy"])]);
        assert_eq!(f.coverage(), Coverage::Some);
        assert!(!f.matches("noisy") && f.matches("other"));
        let f = applied(&[unsub(&["noisy"]), sub(&["noisy"], false)]);
        assert_eq!(f.coverage(), Coverage::Everything);
    }

    #[test]
    fn over_the_limits_the_filter_is_unchanged() {
        let mut f = applied(&[sub(&["a"], true)]);
        let many: Vec<String> = (0..LIMITS.max_types).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            f.apply(&sub(&many, false), &LIMITS),
            Err(OverLimit::TooManyTypes)
        );
        assert!(f.matches("a") && !f.matches("1"));
        // Types already held do not count twice.
        f.apply(&sub(&["a", "b"], false), &LIMITS).unwrap();
        assert_eq!(f.len(), 2);

        let long = "x".repeat(40);
        let mut f = applied(&[unsub(&[long.as_str()])]);
        assert_eq!(
            f.apply(&unsub(&["y".repeat(30).as_str()]), &LIMITS),
            Err(OverLimit::TooManyBytes)
        );
        assert!(!f.matches(&long) && f.matches("y"));
        // Removing frees the budget.
        f.apply(&sub(&[long.as_str()], false), &LIMITS).unwrap();
        f.apply(&unsub(&["y".repeat(30).as_str()]), &LIMITS)
            .unwrap();
    }

    #[test]
    fn one_change_applied_to_equal_filters_leaves_them_equal() {
        let changes = [
            sub(&["a", "b"], true),
            unsub(&["a"]),
            sub(&[], false),
            unsub(&["z"]),
            unsub(&[]),
            sub(&["q"], false),
        ];
        let (mut live, mut spare) = (Filter::default(), Filter::default());
        for change in &changes {
            spare.apply(change, &LIMITS).unwrap();
            std::mem::swap(&mut live, &mut spare);
            spare.apply(change, &LIMITS).unwrap();
            assert_eq!(live, spare);
        }
    }
}
