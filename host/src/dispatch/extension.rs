//! Extension pattern: every enabled plugin of a type acts, in a defined order, with one
//! result per plugin. The order is priority (ascending), then the order the user configured,
//! then name. A failing extension is reported and the rest go on, unless the scope asked to
//! stop at the first failure.

/// What to do when an extension fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Report the failure and call the others.
    #[default]
    Continue,
    /// Stop at the first failure; the rest are reported as skipped.
    StopAtFirst,
}

/// One extension and the keys that order it.
#[derive(Debug)]
pub struct Extension<T> {
    /// The instance's name.
    pub name: String,
    /// Lower runs first.
    pub priority: i32,
    /// Position in the user's configuration.
    pub configured: usize,
    /// The instance.
    pub item: T,
}

/// What one extension gave.
#[derive(Debug, PartialEq)]
pub enum Outcome<R, E> {
    /// It succeeded.
    Done(R),
    /// It failed.
    Failed(E),
    /// It was not called because an earlier one failed under [`FailurePolicy::StopAtFirst`].
    Skipped,
}

/// The enabled extensions of one type in one scope, in calling order.
#[derive(Debug)]
pub struct Extensions<T> {
    members: Vec<Extension<T>>,
}

impl<T> Default for Extensions<T> {
    fn default() -> Self {
        Extensions {
            members: Vec::new(),
        }
    }
}

impl<T> Extensions<T> {
    /// Orders the extensions: priority, then configured position, then name.
    pub fn new(mut members: Vec<Extension<T>>) -> Self {
        members.sort_by(|a, b| {
            (a.priority, a.configured, &a.name).cmp(&(b.priority, b.configured, &b.name))
        });
        Extensions { members }
    }

    /// Calls `f` on every extension in order; one outcome per extension, in the same order.
    pub fn map<R, E>(
        &mut self,
        policy: FailurePolicy,
        mut f: impl FnMut(&mut T) -> Result<R, E>,
    ) -> Vec<Outcome<R, E>> {
        let mut outcomes = Vec::with_capacity(self.members.len());
        let mut stopped = false;
        for member in &mut self.members {
            if stopped {
                outcomes.push(Outcome::Skipped);
                continue;
            }
            match f(&mut member.item) {
                Ok(value) => outcomes.push(Outcome::Done(value)),
                Err(err) => {
                    stopped = policy == FailurePolicy::StopAtFirst;
                    outcomes.push(Outcome::Failed(err));
                }
            }
        }
        outcomes
    }

    /// The same extensions, in the same order, each item replaced by what `f` gives; those
    /// for which it gives nothing (an instance that could not be started) are left out.
    pub fn filter_map<U>(&self, mut f: impl FnMut(&T) -> Option<U>) -> Extensions<U> {
        Extensions {
            members: self
                .members
                .iter()
                .filter_map(|m| {
                    f(&m.item).map(|item| Extension {
                        name: m.name.clone(),
                        priority: m.priority,
                        configured: m.configured,
                        item,
                    })
                })
                .collect(),
        }
    }

    /// The names, in calling order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.name.as_str())
    }

    /// The instances, in calling order.
    pub fn iter(&self) -> impl Iterator<Item = &Extension<T>> {
        self.members.iter()
    }

    /// The instances, in calling order, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Extension<T>> {
        self.members.iter_mut()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(name: &str, priority: i32, configured: usize) -> Extension<String> {
        Extension {
            name: name.into(),
            priority,
            configured,
            item: name.into(),
        }
    }

    #[test]
    fn orders_by_priority_then_configuration_then_name() {
        let set = Extensions::new(vec![
            ext("b", 0, 1),
            ext("a", 0, 1),
            ext("z", -5, 9),
            ext("c", 0, 0),
        ]);
        assert_eq!(set.names().collect::<Vec<_>>(), ["z", "c", "a", "b"]);
    }

    #[test]
    fn continues_or_stops_after_a_failure() {
        let mut set = Extensions::new(vec![ext("a", 0, 0), ext("b", 0, 1), ext("c", 0, 2)]);
        let call = |item: &mut String| {
            if item == "b" {
                Err("boom")
            } else {
                Ok(item.clone())
            }
        };
        let all = set.map(FailurePolicy::Continue, call);
        assert_eq!(
            all,
            [
                Outcome::Done("a".into()),
                Outcome::Failed("boom"),
                Outcome::Done("c".into())
            ]
        );
        let first = set.map(FailurePolicy::StopAtFirst, call);
        assert_eq!(
            first,
            [
                Outcome::Done("a".into()),
                Outcome::Failed("boom"),
                Outcome::Skipped
            ]
        );
    }
}
