//! `Shared<T>`: what the guest kernel shares between its tables (open file descriptions, pipes, sockets, files,
//! the path table), with the interface of `Rc<RefCell<T>>` but `Send`, so that a whole guest can move to
//! another host thread (fault-tolerant replicas run on threads of their own).
//!
//! A guest is only ever used by one thread at a time, so a lock is never contended: `borrow` and
//! `borrow_mut` panic where `RefCell` would (a conflicting borrow is a bug), instead of waiting. The lock
//! costs an uncontended atomic operation, as `RefCell`'s flag costs a plain one.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

/// A shared, mutable value: `Arc<RwLock<T>>` used as `Rc<RefCell<T>>` (see the module documentation).
pub struct Shared<T>(Arc<RwLock<T>>);

/// A weak reference to a `Shared` value (as `rc::Weak` to an `Rc`).
pub struct WeakShared<T>(std::sync::Weak<RwLock<T>>);

/// A borrow that failed because the value is mutably borrowed (as `RefCell::try_borrow`'s error).
#[derive(Debug)]
pub struct BorrowError;

impl<T> Shared<T> {
    pub fn new(value: T) -> Shared<T> {
        Shared(Arc::new(RwLock::new(value)))
    }

    /// Reads the value; panics if it is mutably borrowed.
    #[track_caller]
    pub fn borrow(&self) -> RwLockReadGuard<'_, T> {
        self.try_borrow()
            .expect("a shared kernel object borrowed while mutably borrowed")
    }

    /// Writes the value; panics if it is borrowed.
    #[track_caller]
    pub fn borrow_mut(&self) -> RwLockWriteGuard<'_, T> {
        match self.0.try_write() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                panic!("a shared kernel object mutably borrowed while borrowed")
            }
        }
    }

    /// Reads the value unless it is mutably borrowed.
    pub fn try_borrow(&self) -> Result<RwLockReadGuard<'_, T>, BorrowError> {
        match self.0.try_read() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(BorrowError),
        }
    }

    /// Whether both name the same value.
    pub fn ptr_eq(a: &Shared<T>, b: &Shared<T>) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// The value's address, as a key for tables of objects (a snapshot's copies).
    pub fn as_ptr(this: &Shared<T>) -> *const () {
        Arc::as_ptr(&this.0) as *const ()
    }

    pub fn downgrade(this: &Shared<T>) -> WeakShared<T> {
        WeakShared(Arc::downgrade(&this.0))
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.try_borrow() {
            Ok(v) => f.debug_tuple("Shared").field(&*v).finish(),
            Err(_) => f.write_str("Shared(<borrowed>)"),
        }
    }
}

impl<T> WeakShared<T> {
    pub fn upgrade(&self) -> Option<Shared<T>> {
        self.0.upgrade().map(Shared)
    }

    /// How many `Shared` handles still hold the value (0: it is gone).
    pub fn strong_count(&self) -> usize {
        self.0.strong_count()
    }
}

impl<T> Clone for WeakShared<T> {
    fn clone(&self) -> Self {
        WeakShared(self.0.clone())
    }
}

impl<T> std::fmt::Debug for WeakShared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(Weak)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_follow_refcell_rules() {
        let s = Shared::new(5);
        let t = s.clone();
        {
            let a = s.borrow();
            let b = t.borrow();
            assert_eq!(*a + *b, 10);
            assert!(t.try_borrow().is_ok());
        }
        *t.borrow_mut() += 1;
        assert_eq!(*s.borrow(), 6);
        assert!(Shared::ptr_eq(&s, &t));
        let w = Shared::downgrade(&s);
        drop((s, t));
        assert!(w.upgrade().is_none());
    }

    #[test]
    #[should_panic(expected = "mutably borrowed while borrowed")]
    fn a_write_during_a_read_panics_instead_of_waiting() {
        let s = Shared::new(1);
        let _a = s.borrow();
        let _b = s.borrow_mut();
    }

    #[test]
    fn a_guest_can_move_to_another_thread() {
        fn is_send<T: Send>() {}
        is_send::<crate::linux::LinuxMachine<crate::linux::MemoryHost>>();
    }
}
